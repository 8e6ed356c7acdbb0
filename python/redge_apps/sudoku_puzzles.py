"""Sudoku puzzles made and checked here: a bitmask backtracking solver (minimum-remaining-values
order) that counts solutions up to a limit, a random full-grid generator, and a puzzle maker that
removes clues in random order while the solution stays unique, down to an exact number of givens.

Grids are lists of 81 ints, row-major, 0 = empty. Everything is driven by ``random.Random(seed)``,
so a (seed, count, givens) triple always gives the same puzzles.
"""

from __future__ import annotations

import random
from typing import Iterator

ALL = 0x1FF  # digits 1..9 as bits 0..8


def _box(r: int, c: int) -> int:
    return (r // 3) * 3 + c // 3


def solve(grid: list[int], limit: int = 2, rng: random.Random | None = None):
    """Count the solutions of ``grid`` up to ``limit``; returns (count, first solution or None).
    Raises ValueError when the givens already clash. ``rng`` shuffles the digit order (used to
    draw random full grids)."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    g = list(grid)
    empty = []
    for i, v in enumerate(g):
        r, c = divmod(i, 9)
        if v:
            bit = 1 << (v - 1)
            if rows[r] & bit or cols[c] & bit or boxes[_box(r, c)] & bit:
                raise ValueError("givens clash")
            rows[r] |= bit
            cols[c] |= bit
            boxes[_box(r, c)] |= bit
        else:
            empty.append(i)
    found = [0, None]

    def rec() -> bool:  # True: stop (limit reached)
        if not empty:
            found[0] += 1
            if found[1] is None:
                found[1] = list(g)
            return found[0] >= limit
        best, best_mask, best_n = -1, 0, 10
        for j, i in enumerate(empty):
            r, c = divmod(i, 9)
            mask = ALL & ~(rows[r] | cols[c] | boxes[_box(r, c)])
            n = bin(mask).count("1")
            if n < best_n:
                best, best_mask, best_n = j, mask, n
                if n <= 1:
                    break
        if best_n == 0:
            return False
        i = empty[best]
        empty[best] = empty[-1]
        empty.pop()
        r, c = divmod(i, 9)
        b = _box(r, c)
        digits = [d for d in range(9) if best_mask >> d & 1]
        if rng is not None:
            rng.shuffle(digits)
        stop = False
        for d in digits:
            bit = 1 << d
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            g[i] = d + 1
            stop = rec()
            rows[r] &= ~bit
            cols[c] &= ~bit
            boxes[b] &= ~bit
            g[i] = 0
            if stop:
                break
        empty.append(i)
        empty[best], empty[-1] = empty[-1], empty[best]
        return stop

    rec()
    return found[0], found[1]


def is_valid_solution(grid: list[int]) -> bool:
    """Every row, column and box holds 1..9 once."""
    units = [[r * 9 + c for c in range(9)] for r in range(9)]
    units += [[r * 9 + c for r in range(9)] for c in range(9)]
    units += [[(br + r) * 9 + bc + c for r in range(3) for c in range(3)]
              for br in (0, 3, 6) for bc in (0, 3, 6)]
    return all(sorted(grid[i] for i in u) == list(range(1, 10)) for u in units)


def random_full_grid(rng: random.Random) -> list[int]:
    count, sol = solve([0] * 81, limit=1, rng=rng)
    assert count == 1 and is_valid_solution(sol)
    return sol


def make_puzzle(rng: random.Random, givens: int) -> tuple[list[int], list[int]] | None:
    """One pass of clue removal in random order keeping uniqueness; (puzzle, solution) with exactly
    ``givens`` clues, or None when this grid's pass got stuck above ``givens``."""
    solution = random_full_grid(rng)
    puzzle = list(solution)
    cells = list(range(81))
    rng.shuffle(cells)
    left = 81
    for i in cells:
        if left == givens:
            break
        keep = puzzle[i]
        puzzle[i] = 0
        if solve(puzzle, limit=2)[0] == 1:
            left -= 1
        else:
            puzzle[i] = keep
    return (puzzle, solution) if left == givens else None


def generate(count: int, givens: int, seed: int) -> Iterator[tuple[list[int], list[int]]]:
    """``count`` puzzles with exactly ``givens`` clues and a unique solution (verified again)."""
    rng = random.Random(seed)
    made = 0
    while made < count:
        out = make_puzzle(rng, givens)
        if out is None:
            continue
        puzzle, solution = out
        n, sol = solve(puzzle, limit=2)
        assert n == 1 and sol == solution and sum(v > 0 for v in puzzle) == givens
        made += 1
        yield puzzle, solution


def to_string(grid: list[int]) -> str:
    return "".join(str(v) if v else "." for v in grid)
