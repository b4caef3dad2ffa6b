"""Issue 18 (helper `checks`): every exercise stub's docstring states its return contract and the conventions
its check enforces. Idempotent: finds each exercise cell by its `def name(` line and replaces (or inserts) the
docstring right under it. Run from a worktree: python /work/coord/nbscripts/checks.py"""
import re
from pathlib import Path

import nbformat

DOCSTRINGS = {
    "01_forward_process": {
        "linear_betas": "T betas evenly spaced from beta_start to beta_end, both included.\n\n"
                        "Returns a float64 tensor of shape (T,).",
        "alpha_bars_from_betas": "alpha_bar_t = prod_{s <= t} (1 - beta_s) for every 0-based t.\n\n"
                                 "Returns a tensor of the betas' shape (T,) and dtype (float64).",
        "cosine_betas": "The cosine schedule of Nichol & Dhariwal, clipped at max_beta.\n\n"
                        "Returns a float64 tensor of shape (T,); build the grid in float64 too\n"
                        "(torch.arange(T + 1) / T alone is float32 in torch).",
        "q_sample": "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise. x0, noise: (B, ...); t: (B,) int64.\n\n"
                    "Returns a tensor of x0's shape and dtype (float32 here).",
        "q_posterior": "Mean and variance of q(x_{t-1} | x_t, x0). t: (B,) int64.\n\n"
                       "Returns a tuple (mean, variance): mean of x0's shape, variance of shape (B, 1, ..., 1),\n"
                       "both in x0's dtype (cast the float64 schedule values).",
        "x0_from_eps": "x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t). x_t, eps: (B, ...); t: (B,) int64.\n\n"
                      "Returns a tensor of x_t's shape and dtype (float32 here).",
        "v_from_x0_eps": "v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0. x0, eps: (B, ...); t: (B,) int64.\n\n"
                    "Returns a tensor of x0's shape and dtype (float32 here).",
        "score_from_eps": "score = -eps / sqrt(1 - alpha_bar_t). eps: (B, ...); t: (B,) int64.\n\n"
                          "Returns a tensor of eps's shape and dtype (float32 here).",
    },
    "02_procedural_demo": {
        "ease": "Given a progress value and an easing name, return the blend strength s = f(progress).\n\n"
                "quadratic: p**2    cubic: p**3 (the default)    quartic: p**4    smoothstep: 3 p**2 - 2 p**3\n"
                "Returns the same kind as progress: a Python float for a float, a tensor of progress's shape\n"
                "and dtype for a tensor.",
        "noise_scale": "g(t): 0.1 (t/T)**2 (quadratic), 0.1 t/T (linear) or 0.1 exp(-5 (T - t)/T) (exponential); 0.0 at t = 0.\n\n"
                       "Returns a Python float.",
        "blend_step": "x_t = clip(noise * (1 - s) + pattern * s + g(t) * z, 0, 1), with s = ease((T - t) / T, easing).\n\n"
                      "noise, pattern: (H, W, C) in [0, 1]; z: N(0, 1) of the same shape.\n"
                      "Returns a tensor of noise's shape and dtype (float32 here), values in [0, 1].",
        "image_stats": "(mean, std, min, max) over every element; std divides by N.\n\n"
                       "Returns a tuple of four Python floats.",
    },
    "03_unet": {
        "sinusoidal_embedding": "PE(t, 2i) = sin(t / 10000^(2i/dim)), PE(t, 2i+1) = cos(t / 10000^(2i/dim)); t: (B,) int.\n\n"
                                "Returns a float32 tensor of shape (B, dim).",
        "residual_block": "x (B, C_in, H, W), time_emb (B, time_dim), using block's layers as written above.\n\n"
                          "Returns a float32 tensor of shape (B, C_out, H, W).",
        "self_attention": "Single-head self-attention over the H*W positions of x (B, C, H, W).\n\n"
                          "Returns a tensor of shape (B, C_out, H, W) in x's dtype, C_out = w_v.shape[0].",
        "upsample_and_concat": "Upsample h (B, C_h, H/2, W/2) x2 (nearest), apply conv, concatenate [h, skip] on channels.\n\n"
                               "Returns a tensor of shape (B, C_out + C_s, H, W), the convolved features first.",
    },
    "04_training": {
        "sample_timesteps": "One timestep per image, uniform on {0, ..., T-1}.\n\n"
                            "Returns an int64 tensor of shape (batch,). Draw with\n"
                            "torch.randint(0, T, (batch,), generator=generator): the check compares random streams.",
        "diffusion_loss": "L_simple = mean over all elements of (noise - model(x_t, t))^2, x_t = q_sample(x0, t, noise).\n\n"
                          "Returns a float32 tensor of shape () that carries gradient to the model's parameters\n"
                          "(no .item(), no .detach(), no torch.no_grad()).",
        "ema_update": "beta * e + (1 - beta) * p for each pair (e from ema_params, p from params).\n\n"
                      "Returns a new list of tensors (the inputs stay unchanged), each of the pair's shape and dtype.",
        "drop_labels": "Replace each label (B,) by null_class independently with probability p.\n\n"
                       "Returns a new int64 tensor of y's shape (y stays unchanged). Drop where\n"
                       "torch.rand(y.shape, generator=generator) < p: the check compares random streams.",
    },
    "05_ddim": {
        "ddim_step": "x_{t_prev} = sqrt(abar_prev) * x0_hat + sqrt(1 - abar_prev) * eps, with x0_hat from x_t and eps.\n\n"
                     "t, t_prev: ints; t_prev = -1 means clean data (abar_prev = 1).\n"
                     "Returns a tensor of x_t's shape and dtype (float32 here).",
        "ddim_timesteps": "The trailing DDIM timesteps t_i = T - 1 - round(i * T / steps), i = 0 .. steps - 1.\n\n"
                          "Returns an int64 tensor of shape (steps,), decreasing from T - 1. Ties (i * T / steps\n"
                          "ending in .5) round half to even, as torch.round does; diffusers' trailing spacing,\n"
                          "round(T - i * T / steps) - 1, differs from this at such ties when T is odd.",
        "ddim_sigma": "DDIM's noise scale sigma(eta), elementwise over tensors of abar_t and abar_prev.\n\n"
                      "Returns a tensor of alpha_bar_t's shape and dtype (float64 here).",
        "slerp": "Spherical interpolation from z0 (alpha = 0) to z1 (alpha = 1); theta is the angle between the whole tensors.\n\n"
                 "Returns a tensor of z0's shape and dtype.",
    },
    "06_guidance": {
        "classifier_guidance_eps": "eps - scale * sqrt(1 - alpha_bar_t) * gradient. eps, gradient: (B, ...); t: (B,) int64.\n\n"
                                   "Returns a tensor of eps's shape and dtype (float32 here).",
        "guided_eps": "Classifier-free guidance: eps_uncond + guidance_scale * (eps_cond - eps_uncond).\n\n"
                      "Returns a tensor of eps_cond's shape and dtype.",
        "cfg_batch": "Both CFG branches from ONE model call on the doubled batch [x_t; x_t] with labels [y; null].\n\n"
                     "model(x, t, y=labels) needs int64 labels. Returns a tensor of x_t's shape and dtype.",
        "inpaint_merge": "mask * q_sample(known, t_prev, noise) + (1 - mask) * x_generated (mask: 1 = known pixel).\n\n"
                         "Returns a tensor of x_generated's shape and dtype (float32 here).",
    },
}


def set_docstring(source: str, name: str, text: str) -> str:
    lines = source.split("\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
    body_indent = "    "
    start = index + 1
    end = start
    if lines[start].strip().startswith('"""'):
        end = start
        if not (lines[start].strip().endswith('"""') and len(lines[start].strip()) > 3):
            end = next(i for i in range(start + 1, len(lines)) if lines[i].strip().endswith('"""'))
        end += 1
    doc_lines = text.split("\n")
    new = [body_indent + '"""' + doc_lines[0]] + [(body_indent + line) if line else "" for line in doc_lines[1:]]
    new[-1] += '"""'
    return "\n".join(lines[:start] + new + lines[end:])


for stem, docs in DOCSTRINGS.items():
    path = Path("solutions") / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for name, text in docs.items():
            if cell.cell_type == "code" and re.search(rf"^def {name}\(", cell.source, re.M) and "BEGIN SOLUTION" in cell.source:
                cell.source = set_docstring(cell.source, name, text)
    nbformat.write(nb, path)
