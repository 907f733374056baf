"""Import Hugging Face diffusers `UNet2DModel` pipelines as scorekit runs, and export them back.

Accepted folders (weights only from `diffusion_pytorch_model.safetensors`; nothing is downloaded):
- a pipeline saved by `save_pretrained`: `model_index.json`, `unet/config.json` + weights, `scheduler/
  scheduler_config.json`;
- a bare UNet folder (`config.json` + weights) with `scheduler_config.json` beside it, in `scheduler/`, or in
  `../scheduler/` (the `unet/` folder of a pipeline).

The scheduler config becomes the discrete `ddpm` process (T = num_train_timesteps; beta_schedule linear,
scaled_linear, squaredcos_cap_v2 = cosine with s = 0.008, or trained_betas) and `prediction_type` the
parameterisation (epsilon → eps, v_prediction → v, sample → x0). The network is fed c_in·x_σ = √ᾱ·x_σ, i.e.
diffusers' x_t, and the conditioning `index`: training step t ↔ σ_t = √((1 − ᾱ_t)/ᾱ_t) exactly, and between
two steps the fractional index from log σ interpolated linearly (what k-diffusion's discrete wrappers do), which
the sinusoidal embedding accepts as a real number. Sampler-side settings of diffusers' schedulers
(`timestep_spacing`, `steps_offset`, `clip_sample`, `thresholding`, `set_alpha_to_one`) are not part of D: they
are kept verbatim in config["diffusers"] (and written back on export); `diffusers_timesteps` reproduces a
scheduler's inference timesteps for `--schedule` lists.

`EDMEulerScheduler` / `EDMDPMSolverMultistepScheduler` become the `edm` process on [sigma_min, sigma_max] with
the `edm` parameterisation (σ_data = sigma_data) and `log_sigma` conditioning (their c_noise = ¼ ln σ);
`v_prediction` with sigma_data 1 is the `v` parameterisation. A UNet exported from scorekit's own `unet` (see
`diffusers_export`) carries `_scorekit.num_classes` in its config: its last class embedding is "no label".

`ScoreSdeVePipeline` (NCSN++ as a UNet2DModel with FIR skip blocks and Fourier features of log σ, with a
`ScoreSdeVeScheduler`) becomes the VE process (σ_min, σ_max, t_min = sampling_eps) with the network read as the
score, conditioned on σ itself (parameterization "score", conditioning "sigma"), data in [0, 1].
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, read_config, save_tensors, write_config, write_json_atomic
from .common import _prepare_out
from .diffusers_export import export_own_unet, export_source

__all__ = [
    "import_diffusers",
    "export_diffusers",
    "find_diffusers_files",
    "scheduler_process_and_denoiser",
    "unet_network_config",
    "read_diffusers_weights",
    "diffusers_timesteps",
    "timestep_sigmas",
]

WEIGHTS = "diffusion_pytorch_model.safetensors"
_DISCRETE_SCHEDULERS = {
    "DDPMScheduler",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
}
_PREDICTION = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
_BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path}: not valid JSON ({' '.join(str(e).split())})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what} {path}: expected a JSON object")
    return obj


def find_diffusers_files(path: str | Path, scheduler_config: str | Path | None = None) -> dict:
    """Locate {"unet_config", "weights", "scheduler_config", "model_index"} in a pipeline or bare UNet folder."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"diffusers folder not found: {root}")
    model_index = None
    if (root / "model_index.json").is_file():
        model_index = _read_json(root / "model_index.json", "model_index.json")
        unet_entry = model_index.get("unet")
        if unet_entry is None:
            raise ValueError(f"{root / 'model_index.json'}: the pipeline has no 'unet' component")
        if isinstance(unet_entry, list) and len(unet_entry) == 2 and unet_entry[1] != "UNet2DModel":
            raise ValueError(f"{root}: the pipeline's unet is a {unet_entry[1]}; only UNet2DModel is supported")
        unet_dir = root / "unet"
        sched = root / "scheduler" / "scheduler_config.json"
    else:
        unet_dir = root
        candidates = [root / "scheduler_config.json", root / "scheduler" / "scheduler_config.json"]
        candidates.append(root.parent / "scheduler" / "scheduler_config.json")
        sched = next((c for c in candidates if c.is_file()), candidates[0])
    if scheduler_config is not None:
        sched = Path(scheduler_config)
    cfg = unet_dir / "config.json"
    if not cfg.is_file():
        raise ValueError(f"{root}: neither a diffusers pipeline (model_index.json) nor a UNet folder (config.json)")
    weights = unet_dir / WEIGHTS
    if not weights.is_file():
        if (unet_dir / "diffusion_pytorch_model.bin").is_file():
            raise ValueError(f"{unet_dir}: only safetensors weights are read ({WEIGHTS}), not pickled .bin files")
        raise ValueError(f"{unet_dir}: no {WEIGHTS}")
    if not sched.is_file():
        raise ValueError(f"{root}: no scheduler_config.json found (pass --scheduler-config FILE)")
    return {"unet_config": cfg, "weights": weights, "scheduler_config": sched, "model_index": model_index}


def unet_network_config(unet_config: dict, source: str = "unet config") -> dict:
    """diffusers UNet2DModel config.json → {"arch": "diffusers_unet2d", …}; other model classes or unknown fields
    are refused in one line."""
    from ..models.diffusers_unet import DiffusersUNet2D

    cls = unet_config.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise ValueError(f"{source}: model class {cls!r} is not supported (only UNet2DModel)")
    known = set(inspect.signature(DiffusersUNet2D.__init__).parameters) - {"self"}
    net = {"arch": "diffusers_unet2d"}
    for k, v in unet_config.items():
        if k.startswith("_"):
            continue
        if k not in known:
            raise ValueError(f"{source}: unsupported UNet2DModel config field {k!r}")
        net[k] = list(v) if isinstance(v, tuple) else v
    return net


def scheduler_process_and_denoiser(sched: dict, net_cfg: dict, source: str = "scheduler config") -> tuple[dict, dict]:
    """A discrete-β diffusers scheduler config → (process config, denoiser config) of the run."""
    cls = sched.get("_class_name", "DDPMScheduler")
    fourier = net_cfg.get("time_embedding_type", "positional") == "fourier"
    if cls == "ScoreSdeVeScheduler":
        return _score_sde_ve(sched, fourier, source)
    if cls in ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"):
        return _edm_scheduler(sched, net_cfg, fourier, source)
    if fourier:
        raise ValueError(f"{source}: a Fourier-embedded (σ-conditioned) UNet needs a ScoreSdeVeScheduler, not {cls!r}")
    if cls not in _DISCRETE_SCHEDULERS:
        raise ValueError(
            f"{source}: scheduler {cls!r} is not supported (discrete β schedulers: DDPM, DDIM, DPM-Solver, …)"
        )
    if sched.get("rescale_betas_zero_snr"):
        raise ValueError(f"{source}: rescale_betas_zero_snr gives ᾱ_T = 0 (σ = ∞) and is not supported")
    T = int(sched.get("num_train_timesteps", 1000))
    trained = sched.get("trained_betas")
    if trained is not None:
        if not isinstance(trained, list) or len(trained) != T:
            raise ValueError(f"{source}: trained_betas must be a list of num_train_timesteps ({T}) numbers")
        process = {"name": "ddpm", "betas": [float(b) for b in trained]}
    else:
        schedule = sched.get("beta_schedule", "linear")
        if schedule not in _BETA_SCHEDULES:
            raise ValueError(
                f"{source}: beta_schedule {schedule!r} is not supported ({', '.join(_BETA_SCHEDULES)}, trained_betas)"
            )
        process = {
            "name": "ddpm",
            "num_steps": T,
            "schedule": _BETA_SCHEDULES[schedule],
            "beta_start": float(sched.get("beta_start", 1e-4)),
            "beta_end": float(sched.get("beta_end", 0.02)),
        }
        if schedule == "squaredcos_cap_v2":
            process["cosine_s"] = 0.008
    prediction = sched.get("prediction_type", "epsilon")
    if prediction not in _PREDICTION:
        raise ValueError(f"{source}: prediction_type {prediction!r} is not supported ({', '.join(_PREDICTION)})")
    cin, cout = int(net_cfg.get("in_channels", 3)), int(net_cfg.get("out_channels", 3))
    variance = sched.get("variance_type") or "fixed_small"
    output_channels = None
    if cout == 2 * cin and str(variance).startswith("learned"):
        output_channels = cin  # learned variance in the second half: D uses the mean prediction only
    elif cout != cin:
        raise ValueError(f"{source}: UNet has {cout} output channels for {cin} input channels (variance {variance!r})")
    den = {
        "parameterization": _PREDICTION[prediction],
        "conditioning": "index",
        "sigma_data": 0.5,
        "output_channels": output_channels,
        "class_conditional": bool(net_cfg.get("num_class_embeds")),
    }
    return process, den


def _score_sde_ve(sched: dict, fourier: bool, source: str) -> tuple[dict, dict]:
    """ScoreSdeVeScheduler: the VE SDE σ(t) = σ_min (σ_max/σ_min)^t on [sampling_eps, 1]; the UNet (NCSN++) is
    fed x and σ and returns the score (its output is divided by σ inside), so D = x + σ²·F(x, σ)."""
    if not fourier:
        raise ValueError(f"{source}: ScoreSdeVeScheduler needs a UNet with time_embedding_type 'fourier'")
    process = {
        "name": "ve",
        "sigma_min": float(sched.get("sigma_min", 0.01)),
        "sigma_max": float(sched.get("sigma_max", 1348.0)),
        "t_min": float(sched.get("sampling_eps", 1e-5)),
    }
    den = {
        "parameterization": "score",
        "conditioning": "sigma",
        "sigma_data": 0.5,
        "output_channels": None,
        "class_conditional": False,
    }
    return process, den


def _edm_scheduler(sched: dict, net_cfg: dict, fourier: bool, source: str) -> tuple[dict, dict]:
    """diffusers' EDM schedulers: D = c_skip·x + c_out·F(c_in·x, ¼ ln σ) with σ_data's c_skip, c_out, c_in (EDM
    preconditioning, Karras et al. 2022, Table 1) in σ-space on [sigma_min, sigma_max]: the `edm` process with the
    `edm` parameterisation and `log_sigma` conditioning; `v_prediction` (c_out negated) is scorekit's `v`, which
    fixes σ_data = 1."""
    if fourier:
        raise ValueError(f"{source}: a Fourier-embedded UNet cannot take the EDM schedulers' ¼ ln σ timesteps")
    sd = float(sched.get("sigma_data", 0.5))
    prediction = sched.get("prediction_type", "epsilon")
    if prediction == "epsilon":
        param = "edm"
    elif prediction == "v_prediction" and math.isclose(sd, 1.0):
        param = "v"
    else:
        raise ValueError(
            f"{source}: EDM prediction_type {prediction!r} with sigma_data {sd} is not supported (epsilon, or "
            "v_prediction with sigma_data 1)"
        )
    cin, cout = int(net_cfg.get("in_channels", 3)), int(net_cfg.get("out_channels", 3))
    if cout != cin:
        raise ValueError(f"{source}: UNet has {cout} output channels for {cin} input channels")
    process = {"name": "edm", "sigma_min": float(sched.get("sigma_min", 0.002))}
    process["sigma_max"] = float(sched.get("sigma_max", 80.0))
    den = {
        "parameterization": param,
        "conditioning": "log_sigma",
        "sigma_data": sd,
        "output_channels": None,
        "class_conditional": bool(net_cfg.get("num_class_embeds")),
    }
    return process, den


def _legacy_key(k: str) -> str:
    """diffusers < 0.14 attention names → the current ones (diffusers renames them the same way on load)."""
    for old, new in ((".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")):
        k = k.replace(old, new)
    return k


def read_diffusers_weights(path: str | Path, template: torch.nn.Module) -> dict:
    """Read a diffusers safetensors file and check every tensor against `template` (names, shapes, finiteness);
    the first problem is one CheckpointError line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"corrupt or truncated safetensors file {path}: {msg}") from None
    sd = {_legacy_key(k): v for k, v in sd.items()}
    own = template.state_dict()
    out = {}
    for k, v in own.items():
        if k not in sd:
            raise CheckpointError(f"{path.name}: missing weight {k!r} (weights and unet config disagree)")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path.name}: weight {k!r} has shape {tuple(sd[k].shape)}, the unet config expects {tuple(v.shape)}"
            )
        t = sd[k]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path.name}: weight {k!r} holds non-finite values (damaged file?)")
        out[k] = t.to(v.dtype).contiguous()
    for k in sd:
        if k not in own:
            raise CheckpointError(f"{path.name}: unexpected weight {k!r} (weights and unet config disagree)")
    return out


def import_diffusers(
    path: str | Path, out: str | Path, *, scheduler_config: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Convert a diffusers UNet2DModel pipeline (or UNet folder + scheduler config) into a run directory."""
    from ..models.registry import build_network

    files = find_diffusers_files(path, scheduler_config)
    unet_cfg = _read_json(files["unet_config"], "unet config")
    sched_cfg = _read_json(files["scheduler_config"], "scheduler config")
    net_cfg = unet_network_config(unet_cfg, str(files["unet_config"]))
    process, den = scheduler_process_and_denoiser(sched_cfg, net_cfg, str(files["scheduler_config"]))
    from ..processes import get_process

    get_process(process)  # validates β
    with torch.device("meta"):
        template = build_network(dict(net_cfg))
    weights = read_diffusers_weights(files["weights"], template)
    size = net_cfg.get("sample_size")
    if size is None:
        raise ValueError(f"{files['unet_config']}: sample_size is not set (the run needs the image size)")
    hw = [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]
    channels = int(net_cfg.get("in_channels", 3))
    num_classes = int(net_cfg.get("num_class_embeds") or 0)
    marks = unet_cfg.get("_scorekit")
    if isinstance(marks, dict) and marks.get("num_classes") is not None:
        num_classes = int(marks["num_classes"])  # scorekit's export: the last embedding is the "no label" class
        den["class_conditional"] = num_classes > 0
    out = _prepare_out(out, overwrite)
    save_tensors(out / "model.safetensors", weights, {"source": "diffusers", "file": files["weights"].name})
    if (out / "ema.safetensors").exists():
        (out / "ema.safetensors").unlink()
    cfg = {
        "kind": "score_model",
        "data": {
            "spec": "diffusers",
            "kind": "image",
            "shape": [channels, *hw],
            "num_classes": num_classes,
            # diffusers' DDPM-family pipelines map model range [-1, 1] to images as x/2 + 0.5; ScoreSdeVePipeline
            # clamps its samples to [0, 1] (score_sde's uncentred data)
            "transform": {"kind": "image", "shift": 0.0, "scale": 1.0}
            if process["name"] == "ve"
            else {"kind": "image", "shift": 0.5, "scale": 0.5},
        },
        "process": process,
        "network": net_cfg,
        "denoiser": den,
        "training": {"imported_from": "diffusers", "checkpoint": str(Path(path).name)},
        "diffusers": {
            "unet_config": unet_cfg,
            "scheduler_config": sched_cfg,
            "model_index": files["model_index"],
        },
    }
    write_config(out, cfg)
    return out


# --- inference timesteps ------------------------------------------------------------------------------------
def diffusers_timesteps(sched: dict, steps: int, solver: str = "ddim") -> list[int]:
    """The integer timesteps diffusers' DDIMScheduler (`solver="ddim"`) or DPMSolverMultistepScheduler
    (`"dpmsolver"`) `set_timesteps(steps)` chooses for this scheduler config (timestep_spacing, steps_offset)."""
    import numpy as np

    T = int(sched.get("num_train_timesteps", 1000))
    spacing = sched.get("timestep_spacing", "leading" if solver == "ddim" else "linspace")
    offset = int(sched.get("steps_offset", 0))
    n = int(steps)
    if solver not in ("ddim", "dpmsolver"):
        raise ValueError(f"unknown solver {solver!r} (ddim, dpmsolver)")
    if not 1 <= n <= T:
        raise ValueError(f"steps must be in [1, {T}], got {n}")
    m = n if solver == "ddim" else n + 1  # DPM-Solver places N+1 points and drops the last (t = 0)
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, m).round()[::-1]
    elif spacing == "leading":
        ts = (np.arange(0, m) * (T // m)).round()[::-1] + offset
    elif spacing == "trailing":
        ts = np.arange(T, 0, -T / n).round() - 1
    else:
        raise ValueError(f"unknown timestep_spacing {spacing!r} (linspace, leading, trailing)")
    ts = [int(t) for t in ts]
    return ts[:n]


def timestep_sigmas(process, timesteps) -> torch.Tensor:
    """σ schedule [σ_{t_1}, …, σ_{t_N}, 0] of integer DDPM timesteps (σ_t = √((1 − ᾱ_t)/ᾱ_t), float64)."""
    idx = torch.as_tensor(list(timesteps), dtype=torch.long)
    sig = process.sigmas[idx]
    return torch.cat([sig, sig.new_zeros(1)])


# --- export -------------------------------------------------------------------------------------------------
_EXPORT_SCHEDULE = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
_EXPORT_PREDICTION = {v: k for k, v in _PREDICTION.items()}


def _scheduler_from_run(cfg: dict) -> dict:
    """A DDPMScheduler config for a run without a recorded one (a scorekit-trained diffusers_unet2d)."""
    p, d = cfg["process"], cfg["denoiser"]
    if p.get("name") == "ve" and d.get("parameterization") == "score" and d.get("conditioning") == "sigma":
        return {
            "_class_name": "ScoreSdeVeScheduler",
            "sigma_min": float(p["sigma_min"]),
            "sigma_max": float(p["sigma_max"]),
            "sampling_eps": float(p.get("t_min", 1e-5)),
        }
    if p.get("name") != "ddpm" or d.get("conditioning") != "index":
        raise ValueError("export diffusers needs a run on the ddpm process with 'index' conditioning")
    if d.get("parameterization") not in _EXPORT_PREDICTION:
        raise ValueError(f"parameterization {d.get('parameterization')!r} has no diffusers prediction_type")
    sched = {"_class_name": "DDPMScheduler", "prediction_type": _EXPORT_PREDICTION[d["parameterization"]]}
    if p.get("betas") is not None:
        sched.update({"num_train_timesteps": len(p["betas"]), "trained_betas": list(p["betas"])})
    else:
        schedule = p.get("schedule", "linear")
        odd_cosine = schedule == "cosine" and not math.isclose(p.get("cosine_s", 0.008), 0.008)
        if schedule not in _EXPORT_SCHEDULE or odd_cosine:
            raise ValueError(f"ddpm schedule {schedule!r} has no diffusers beta_schedule")
        sched.update(
            {
                "num_train_timesteps": int(p.get("num_steps", 1000)),
                "beta_schedule": _EXPORT_SCHEDULE[schedule],
                "beta_start": float(p.get("beta_start", 1e-4)),
                "beta_end": float(p.get("beta_end", 0.02)),
            }
        )
    return sched


def export_diffusers(run: str | Path, out: str | Path, *, ema: bool = True, overwrite: bool = False) -> Path:
    """Write a run whose network is `diffusers_unet2d` as a diffusers pipeline folder (model_index.json, unet/,
    scheduler/) that `UNet2DModel.from_pretrained` and the scheduler's `from_pretrained` load."""
    run = Path(run)
    cfg = read_config(run)
    net = dict(cfg.get("network") or {})
    if net.get("arch") == "unet":
        return export_own_unet(run, out, ema=ema, overwrite=overwrite)
    if net.get("arch") != "diffusers_unet2d":
        raise ValueError(f"{run}: export diffusers needs a diffusers_unet2d or unet network, not {net.get('arch')!r}")
    recorded = cfg.get("diffusers") or {}
    sched = copy.deepcopy(recorded.get("scheduler_config")) or _scheduler_from_run(cfg)
    out, tensors, _ = export_source(run, out, net, ema=ema, overwrite=overwrite)
    unet_cfg = {k: v for k, v in net.items() if k != "arch"}
    unet_cfg = {"_class_name": "UNet2DModel", **unet_cfg}
    version = (recorded.get("unet_config") or {}).get("_diffusers_version")
    if version:
        unet_cfg["_diffusers_version"] = version
    sched.setdefault("_class_name", "DDPMScheduler")
    index = copy.deepcopy(recorded.get("model_index")) or {}
    pipelines = {"DDIMScheduler": "DDIMPipeline", "ScoreSdeVeScheduler": "ScoreSdeVePipeline"}
    index.setdefault("_class_name", pipelines.get(sched["_class_name"], "DDPMPipeline"))
    index["unet"] = ["diffusers", "UNet2DModel"]
    index["scheduler"] = ["diffusers", sched["_class_name"]]
    (out / "unet").mkdir(parents=True, exist_ok=True)
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    tmp = out / "unet" / f".{WEIGHTS}.tmp"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "unet" / WEIGHTS)
    write_json_atomic(out / "unet" / "config.json", unet_cfg)
    write_json_atomic(out / "scheduler" / "scheduler_config.json", sched)
    write_json_atomic(out / "model_index.json", index)
    return out
