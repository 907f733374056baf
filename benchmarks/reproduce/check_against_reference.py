"""Compare scorekit's NCSN++ and ADM networks with the reference implementations on many layer variants.

Needs local clones of score_sde_pytorch and guided-diffusion (their code is imported, not copied). For each
variant both networks are built, the same random weights (zero-initialised layers included) are loaded by
name, and the outputs on the same inputs are compared. score_sde's CUDA `op` package is replaced by its own
pure-PyTorch `upfirdn2d_native`, taken from the clone's op/upfirdn2d.py. Variants the reference itself cannot
run under PyTorch (its fused FIR up-convolution slices with a negative step; its nearest `Upsample` passes
'nearest' as the scale factor) are skipped and counted.

    python benchmarks/reproduce/check_against_reference.py --score-sde ~/src/score_sde_pytorch \
        --guided-diffusion ~/src/guided-diffusion
"""

from __future__ import annotations

import argparse
import ast
import itertools
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_results  # noqa: E402

NCSNPP_KEYS = (
    "nf ch_mult num_res_blocks attn_resolutions dropout resamp_with_conv conditional fir fir_kernel skip_rescale "
    "resblock_type progressive progressive_input progressive_combine embedding_type fourier_scale init_scale "
    "nonlinearity scale_by_sigma sigma_min sigma_max num_scales"
).split()


def _random_like(sd: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.2 if t.is_floating_point() and k != "sigmas" else t)
        for k, t in sd.items()
    }


def _install_score_sde(root: Path):
    """Import score_sde's models package with a pure-PyTorch `op` module built from its own native upfirdn2d."""
    src = (root / "op" / "upfirdn2d.py").read_text()
    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "upfirdn2d_native")
    ns: dict = {"torch": torch, "F": F}
    exec(compile(ast.Module([fn], []), str(root / "op" / "upfirdn2d.py"), "exec"), ns)
    native = ns["upfirdn2d_native"]
    op = types.ModuleType("op")
    op.upfirdn2d = lambda x, k, up=1, down=1, pad=(0, 0): native(
        x, k, up, up, down, down, pad[0], pad[1], pad[0], pad[1]
    )
    sys.modules["op"] = op
    sys.path.insert(0, str(root))
    from models import ncsnpp  # noqa: PLC0415

    return ncsnpp


def check_ncsnpp(root: Path) -> tuple[list[dict], int]:
    from scorekit.models.ncsnpp import NCSNpp

    ref = _install_score_sde(root)
    base = dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0, resamp_with_conv=True,
                conditional=True, fir=True, fir_kernel=[1, 3, 3, 1], skip_rescale=True, resblock_type="biggan",
                progressive="none", progressive_input="residual", progressive_combine="sum", embedding_type="fourier",
                fourier_scale=16, init_scale=0.0, nonlinearity="swish", scale_by_sigma=True, sigma_min=0.01,
                sigma_max=50, num_scales=100, conv_size=3, attention_type="ddpm", name="ncsnpp")  # fmt: skip
    variants, skipped = [], 0
    for rb, fir, prog, pin, comb in itertools.product(
        ["biggan", "ddpm"],
        [True, False],
        ["none", "output_skip", "residual"],
        ["none", "input_skip", "residual"],
        ["sum", "cat"],
    ):
        if comb == "cat" and pin != "input_skip":
            continue
        if (fir and (prog == "residual" or rb == "ddpm")) or (not fir and (prog != "none" or rb == "ddpm")):
            skipped += 1
            continue
        variants.append({"resblock_type": rb, "fir": fir, "progressive": prog, "progressive_input": pin,
                         "progressive_combine": comb, "centered": False})  # fmt: skip
    variants.append({"embedding_type": "positional", "scale_by_sigma": False, "skip_rescale": False, "centered": True})
    variants.append({"embedding_type": "positional", "scale_by_sigma": True, "conditional": False, "centered": True})
    rows = []
    for i, v in enumerate(variants):
        v = dict(v)
        centered = v.pop("centered")
        m = {**base, **v}
        cfg = types.SimpleNamespace(
            model=types.SimpleNamespace(**m),
            data=types.SimpleNamespace(image_size=16, num_channels=3, centered=centered),
            training=types.SimpleNamespace(continuous=True),
        )
        r = ref.NCSNpp(cfg).eval()
        ours = NCSNpp(image_size=16, num_channels=3, centered=centered, **{k: m[k] for k in NCSNPP_KEYS}).eval()
        sd = _random_like(r.state_dict(), i)
        r.load_state_dict(sd)
        ours.load_state_dict(sd)
        x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(i))
        c = torch.tensor([0.05, 20.0]) if m["embedding_type"] == "fourier" else torch.tensor([3.0, 77.0])
        with torch.no_grad():
            a, b = r(x, c), ours(x, c)
        rows.append({"family": "ncsnpp", "variant": ",".join(f"{k}={val}" for k, val in v.items()),
                     "same_names": list(r.state_dict()) == list(ours.state_dict()),
                     "max_rel_err": float((a - b).abs().max() / a.abs().max())})  # fmt: skip
    return rows, skipped


def check_adm(root: Path) -> list[dict]:
    from scorekit.models.adm import ADMEncoderClassifier, ADMUNet

    sys.path.insert(0, str(root))
    from guided_diffusion.unet import EncoderUNetModel, UNetModel  # noqa: PLC0415

    base = dict(image_size=16, in_channels=3, model_channels=32, num_res_blocks=1, attention_resolutions=(2,),
                dropout=0.0, channel_mult=(1, 2))  # fmt: skip
    cases = []
    for ssn, updown, new, heads, ncls, convres in itertools.product(
        [True, False], [True, False], [True, False], [(2, -1), (1, 16)], [None, 10], [True, False]
    ):
        kw = dict(base, out_channels=6, use_scale_shift_norm=ssn, resblock_updown=updown,
                  use_new_attention_order=new, num_heads=heads[0], num_head_channels=heads[1], num_classes=ncls,
                  conv_resample=convres)  # fmt: skip
        cases.append(("adm_unet", kw, UNetModel, ADMUNet))
    for pool, ssn, updown in itertools.product(["adaptive", "attention"], [True, False], [True, False]):
        kw = dict(base, out_channels=10, use_scale_shift_norm=ssn, resblock_updown=updown, pool=pool,
                  num_head_channels=16)  # fmt: skip
        cases.append(("adm_classifier", kw, EncoderUNetModel, ADMEncoderClassifier))
    rows = []
    for i, (fam, kw, ref_cls, our_cls) in enumerate(cases):
        r, ours = ref_cls(**kw).eval(), our_cls(**kw).eval()
        sd = _random_like(r.state_dict(), 100 + i)
        r.load_state_dict(sd)
        ours.load_state_dict(sd)
        g = torch.Generator().manual_seed(i)
        x, t = torch.randn(2, 3, 16, 16, generator=g), torch.tensor([3, 700])
        y = torch.tensor([1, 7]) if kw.get("num_classes") else None
        with torch.no_grad():
            a = r(x, t, y) if fam == "adm_unet" else r(x, t)
            b = ours(x, t, y)
        shown = {k: v for k, v in kw.items() if k not in base}
        rows.append({"family": fam, "variant": ",".join(f"{k}={v}" for k, v in shown.items()),
                     "same_names": list(r.state_dict()) == list(ours.state_dict()),
                     "max_rel_err": float((a - b).abs().max() / a.abs().max())})  # fmt: skip
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--score-sde", type=Path, required=True, help="local clone of score_sde_pytorch")
    p.add_argument("--guided-diffusion", type=Path, required=True, help="local clone of guided-diffusion")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows, skipped = check_ncsnpp(args.score_sde)
    rows += check_adm(args.guided_diffusion)
    summary = {}
    for fam in ("ncsnpp", "adm_unet", "adm_classifier"):
        sel = [r for r in rows if r["family"] == fam]
        summary[fam] = {"variants": len(sel), "all_same_names": all(r["same_names"] for r in sel),
                        "worst_max_rel_err": max(r["max_rel_err"] for r in sel)}  # fmt: skip
    meta = {"summary": summary, "ncsnpp_skipped_reference_cannot_run": skipped, "torch": torch.__version__}
    write_results(Path(args.out), "reference_check", "scorekit networks vs the reference implementations",
                  ["family", "variant", "same_names", "max_rel_err"], rows, meta)  # fmt: skip
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
