"""Sudoku completion (paper 4.3): ``python python/sudoku.py [--quick] [--help]``.

Launcher: Python puts this folder on ``sys.path`` when it runs a script, so the package
``redge_apps`` beside it imports; the experiment is ``redge_apps/sudoku.py``.
"""

from redge_apps.sudoku import main

if __name__ == "__main__":
    main()
