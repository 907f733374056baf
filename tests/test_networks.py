"""MLP and U-Net: shapes, conditioning, config round trips, and that they learn (U-Net overfits a digit batch;
a DSM-trained MLP matches the exact Gaussian-mixture denoiser)."""

import json
import math

import pytest
import torch

from scorekit.analytic import GaussianMixture
from scorekit.data import load_data
from scorekit.losses import get_objective
from scorekit.models import NetworkDenoiser, build_network
from scorekit.models.layers import FourierEmbedding, num_groups, positional_embedding
from scorekit.models.mlp import MLP
from scorekit.models.unet import UNet, UNetEncoder
from scorekit.processes import get_process


def perturb(net, seed=0, std=0.05):
    """Add noise to every weight so zero-initialised layers stop hiding the rest of the network."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return net


def n_params(net):
    return sum(p.numel() for p in net.parameters())


SMALL_UNET = dict(
    in_channels=1, resolution=8, model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,)
)


# --- U-Net --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg",
    [
        dict(in_channels=1, resolution=8, model_channels=16, channel_mult=(1, 2), num_res_blocks=1),
        dict(in_channels=1, resolution=16, model_channels=16, channel_mult=(1, 2, 2), attn_resolutions=(8,)),
        dict(in_channels=1, resolution=28, model_channels=8, channel_mult=(1, 2, 2), attn_resolutions=(7,)),
        dict(in_channels=3, resolution=16, model_channels=16, channel_mult=(1, 2), num_heads=2, out_channels=6),
        dict(in_channels=3, resolution=32, model_channels=8, channel_mult=(1, 2, 2, 2), num_res_blocks=1),
        dict(in_channels=1, resolution=8, model_channels=16, channel_mult=(1, 2), embedding="fourier", num_classes=3),
    ],
)
def test_unet_shapes_and_zero_init(cfg, gen):
    net = UNet(**cfg)
    r, c = cfg["resolution"], cfg["in_channels"]
    x = torch.randn(2, c, r, r, generator=gen)
    out = net(x, torch.rand(2, generator=gen))
    assert out.shape == (2, cfg.get("out_channels", c), r, r)
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer: F ≡ 0 at init
    out = perturb(net)(x, torch.rand(2, generator=gen))
    assert out.shape == (2, cfg.get("out_channels", c), r, r) and torch.isfinite(out).all() and out.std() > 0


def test_unet_small_config_parameter_count():
    small = UNet(**SMALL_UNET)
    count = n_params(small)
    print(f"\nsmall U-Net (8×8, model_channels=16, channel_mult=(1, 2), 1 res block, attention at 4×4): {count} params")
    assert 150_000 < count < 250_000
    # convolution weights dominate, so doubling the width multiplies the count by almost 4
    wide = n_params(UNet(**{**SMALL_UNET, "model_channels": 32}))
    assert 3.7 < wide / count < 4.0


def test_unet_per_sample_independence_and_noise_broadcast(gen):
    """GroupNorm and attention act within a sample: a sample's output does not depend on its batch mates."""
    net = perturb(UNet(**SMALL_UNET))
    x = torch.randn(4, 1, 8, 8, generator=gen)
    c = torch.rand(4, generator=gen)
    full = net(x, c)
    assert torch.allclose(full[1:2], net(x[1:2], c[1:2]), atol=1e-5)
    assert torch.allclose(net(x, torch.tensor(0.3)), net(x, torch.full((4,), 0.3)), atol=1e-6)
    assert not torch.allclose(net(x, torch.full((4,), 0.1)), net(x, torch.full((4,), 0.9)), atol=1e-3)
    # float64 end to end (likelihood computations may run the network in double precision)
    assert torch.allclose(net.double()(x.double(), c.double()), full.double(), atol=1e-4)


def test_unet_class_conditioning(gen):
    net = perturb(UNet(**SMALL_UNET, num_classes=10))
    x = torch.randn(3, 1, 8, 8, generator=gen)
    c = torch.rand(3, generator=gen)
    y0, y1 = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    assert (net(x, c, y0) - net(x, c, y1)).abs().max() > 1e-3
    null = torch.full((3,), 10, dtype=torch.long)  # index num_classes = no label (classifier-free guidance)
    assert torch.equal(net(x, c, None), net(x, c, null))
    with pytest.raises(ValueError, match=r"class labels must lie in 0\.\.10"):
        net(x, c, torch.full((3,), 11))
    with pytest.raises(ValueError, match="3 class labels for a batch of 2"):
        net(x[:2], c[:2], y0)


def test_unet_encoder_features(gen):
    enc = UNetEncoder(1, 8, model_channels=16, channel_mult=(1, 2), num_res_blocks=1)
    x = torch.randn(5, 1, 8, 8, generator=gen)
    fmap = enc(x, torch.rand(5, generator=gen))
    assert fmap.shape == (5, 32, 4, 4) and enc.out_channels == 32
    assert enc.features(x, torch.rand(5, generator=gen)).shape == (5, 32)


def test_unet_bad_configs():
    with pytest.raises(ValueError, match=r"resolution 28 is not divisible by 2\^\(len\(channel_mult\)-1\) = 8"):
        UNet(1, 28, channel_mult=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="unknown noise embedding"):
        UNet(1, 8, channel_mult=(1, 2), embedding="learned")
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        UNet(1, 8, model_channels=16, channel_mult=(1, 2), attn_resolutions=(4,), num_heads=3)
    with pytest.raises(ValueError, match="expects \\[B, 1, H, W\\]"):
        UNet(**SMALL_UNET)(torch.zeros(2, 3, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="bad network config for 'unet'"):
        build_network({"arch": "unet", "in_channels": 1, "resolution": 8, "channels": 4})


# --- config round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "net",
    [
        lambda: UNet(**SMALL_UNET, embedding="fourier", num_classes=4),
        lambda: MLP(3, hidden=32, depth=2, emb_dim=16, num_classes=2, embedding="fourier"),
    ],
)
def test_config_round_trip_through_json(net, gen):
    a = perturb(net())
    cfg = json.loads(json.dumps(a.to_config()))
    b = build_network(cfg)
    b.load_state_dict(a.state_dict())
    shape = (2, 1, 8, 8) if cfg["arch"] == "unet" else (2, 3)
    x, c, y = torch.randn(shape, generator=gen), torch.rand(2, generator=gen), torch.tensor([0, 1])
    assert torch.equal(a(x, c, y), b(x, c, y))
    # Fourier frequencies are a fixed-seed buffer: a rebuilt network has the same ones before loading weights
    fa = [m.freqs for m in a.modules() if isinstance(m, FourierEmbedding)]
    fb = [m.freqs for m in build_network(cfg).modules() if isinstance(m, FourierEmbedding)]
    assert len(fa) == 1 and torch.equal(fa[0], fb[0])


# --- layers -------------------------------------------------------------------------------------------------
def test_embeddings_and_group_count():
    c = torch.tensor([0.0, 1.0, 500.0])
    e = positional_embedding(c, 8)
    assert e.shape == (3, 8) and torch.allclose(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    # first pair is cos/sin of c itself (frequency 1), last pair frequency 10000^(-3/4)
    assert torch.allclose(e[2, 0], torch.cos(torch.tensor(500.0))) and torch.allclose(e[2, 4], torch.sin(c[2]))
    assert torch.allclose(e[2, 3], torch.cos(torch.tensor(500.0 * 10000 ** (-3 / 4))))
    assert torch.allclose(e.pow(2)[:, :4] + e.pow(2)[:, 4:], torch.ones(3, 4))
    assert [num_groups(ch) for ch in (64, 48, 24, 3, 96)] == [32, 24, 24, 3, 32]


# --- MLP ----------------------------------------------------------------------------------------------------
def test_mlp_shapes_count_and_conditioning(gen):
    dim, hidden, depth, emb = 3, 32, 2, 16
    net = MLP(dim, hidden=hidden, depth=depth, emb_dim=emb, num_classes=5)
    # noise-embedding MLP (2 linears), class table (5 + null), input layer, blocks (3 linears + LayerNorm), head
    expected = (emb * emb + emb) * 2 + 6 * emb + (dim * hidden + hidden)
    expected += depth * (2 * (hidden * hidden + hidden) + (emb * hidden + hidden) + 2 * hidden)
    expected += 2 * hidden + hidden * dim + dim
    assert n_params(net) == expected
    x, c = torch.randn(4, dim, generator=gen), torch.rand(4, generator=gen)
    assert torch.count_nonzero(net(x, c)) == 0
    perturb(net)
    y = torch.tensor([0, 1, 2, 3])
    assert net(x, c, y).shape == (4, dim)
    assert (net(x, c, y) - net(x, c, (y + 1) % 5)).abs().max() > 1e-3
    assert torch.equal(net(x, c), net(x, c, torch.full((4,), 5)))
    assert torch.allclose(net(x, c, y)[2:3], net(x[2:3], c[2:3], y[2:3]), atol=1e-6)
    assert net.double()(x.double(), c.double(), y).dtype == torch.float64
    with pytest.raises(ValueError, match=r"MLP expects inputs \[B, 3\]"):
        net(torch.zeros(4, 2), c)
    with pytest.raises(ValueError, match="unknown noise embedding"):
        MLP(2, embedding="learned")


# --- learning -----------------------------------------------------------------------------------------------
def test_tiny_unet_overfits_one_digit_batch():
    """ε-prediction under the VP SDE: the DSM loss on one batch of 16 digits falls by a large factor in 200 steps."""
    torch.manual_seed(0)  # weight initialisation only
    x0 = load_data("digits", num=16, seed=0).data
    net = UNet(**SMALL_UNET)
    process = get_process("vp")
    den = NetworkDenoiser(net, process, "eps", "t999", data_shape=(1, 8, 8))
    objective = get_objective("dsm", process)

    def held_out_loss():  # the same noise and times before and after training
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return torch.stack([objective(den, x0, g) for _ in range(8)]).mean().item()

    before = held_out_loss()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        loss = objective(den, x0, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    print(f"\nU-Net overfit (VP, eps): DSM loss {before:.3f} → {after:.3f}")
    assert 0.8 < before < 1.2  # zero output: E‖ε‖²/d = 1
    assert after < before / 4


def test_mlp_learns_exact_gmm_denoiser():
    """A DSM-trained MLP (EDM preconditioning) matches the closed-form GMM denoiser at moderate σ far better
    than the best linear denoiser does (the latter is exact only for a single Gaussian)."""
    gmm = GaussianMixture(
        [0.3, 0.5, 0.2], [[-1.5, 0.0], [1.0, 1.0], [0.5, -1.5]], [[0.05, 0.1], [0.1, 0.05], [0.08, 0.08]]
    )
    torch.manual_seed(0)  # weight initialisation only
    steps = 500
    net = MLP(2, hidden=64, depth=3, emb_dim=64)
    process = get_process("edm")
    den = NetworkDenoiser(net, process, "edm", "log_sigma", sigma_data=1.0, data_shape=(2,))
    objective = get_objective("edm", process)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = objective(den, gmm.sample(512, g)[0].float(), g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    ge = torch.Generator().manual_seed(1)
    x0 = gmm.sample(2000, ge)[0]
    mean, var = gmm.mean(), gmm.second_moment() - gmm.mean() ** 2
    for sigma in (0.5, 1.0):
        x = x0 + sigma * torch.randn(x0.shape, generator=ge, dtype=torch.float64)
        exact = gmm.denoise(x, sigma)
        with torch.no_grad():
            learned = den(x.float(), sigma).double()
        linear = mean + var / (var + sigma**2) * (x - mean)
        err = (learned - exact).pow(2).sum(1).mean().sqrt().item()
        err_linear = (linear - exact).pow(2).sum(1).mean().sqrt().item()
        print(f"\nσ={sigma}: RMS ‖D_mlp − D_exact‖ = {err:.4f}, best linear denoiser {err_linear:.4f}")
        assert err < 0.3 * err_linear and err < 0.15 * math.sqrt(2)


def test_mlp_input_fourier_features():
    """`input_fourier` widens only the input layer, is recorded in the config (and only when used), rebuilds the same
    fixed frequencies from the config, and changes the function of the input (not just its parameter count)."""
    from scorekit.models.mlp import MLP
    from scorekit.models.registry import build_network

    plain = MLP(2, hidden=32, depth=1)
    assert "input_fourier" not in plain.to_config() and plain.input_freqs is None
    net = MLP(2, hidden=32, depth=1, input_fourier=8, input_fourier_scale=2.0)
    cfg = net.to_config()
    assert cfg["input_fourier"] == 8 and cfg["input_fourier_scale"] == 2.0
    assert net.inp.in_features == 2 + 16 and net.input_freqs.shape == (2, 8)
    again = build_network(cfg)
    assert torch.equal(again.input_freqs, net.input_freqs)
    again.load_state_dict(net.state_dict())
    torch.nn.init.normal_(net.out.weight)
    again.load_state_dict(net.state_dict())
    x, c = torch.randn(5, 2), torch.zeros(5)
    assert torch.allclose(again(x, c), net(x, c))
    # the output depends on the fixed frequencies (the features are used, not just allocated)
    y = net(x, c)
    net.input_freqs.mul_(1.5)
    assert not torch.allclose(net(x, c), y)
    with pytest.raises(ValueError):
        MLP(2, input_fourier=-1)
