"""Checkpoints: one file holds everything needed to sample from a trained model or to resume its training.

    save_checkpoint    torch.save through a temporary file and a rename (an interrupted save changes nothing)
    read_checkpoint    the payload dict, checked, with its TrainConfig (config.py) rebuilt; v1 files converted
    load_checkpoint    (U-Net with the EMA weights, its NoiseSchedule, info) ready to sample
    DIFFUSION_ASSET    the shipped class-conditional digits model (how it was made: training.py's docstring)

A checkpoint is a dict of tensors and plain values, read with ``torch.load(weights_only=True)`` (nothing is
unpickled): format (CHECKPOINT_FORMAT), config (``TrainConfig.to_dict()``), model / ema / optimizer / scaler /
rng states (an export keeps only ema), step, seconds, loss_history, command, latent (the autoencoder of latent
diffusion, else None) and dataset (name, image_shape [C, H, W], class_names). ``training.train`` writes them.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from ._io import write_atomically
from .config import TrainConfig
from .unet import UNet

CHECKPOINT_FORMAT = "diffusion-course checkpoint v2"      # v2: the TrainConfig stored whole
READABLE_FORMATS = (CHECKPOINT_FORMAT, "diffusion-course checkpoint v1")
DIFFUSION_ASSET = Path(__file__).resolve().parent / "assets" / "digits_conditional.pt"


def save_checkpoint(path, payload: dict) -> None:
    """torch.save through a temporary file and a rename: an interrupted save leaves the old checkpoint intact."""
    write_atomically(path, lambda temporary: torch.save(payload, temporary))


def _config_of_v1(payload: dict) -> dict:
    """The TrainConfig fields of a v1 checkpoint (the shipped asset), which stored them in four places."""
    return {"unet": payload["unet_config"], "steps": payload["step"], "weighting": "uniform", **payload["train_args"],
            "parameterization": payload["parameterization"], "schedule": payload["schedule"]["name"],
            "T": payload["schedule"]["T"], "seed": payload["seed"]}


def _unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch.load (weights-only) refused ``path``, in a few words (never torch's advice to unpickle it)."""
    with open(path, "rb") as file:
        head = file.read(4)
    if head != b"PK\x03\x04":
        return "it is not a PyTorch file (torch.save writes a zip archive)"
    if not zipfile.is_zipfile(path):
        return "the file is truncated or damaged (its zip archive is incomplete)"
    if isinstance(error, pickle.UnpicklingError):
        return "it holds Python objects other than tensors (a different format); it was not unpickled"
    return f"the file is damaged ({type(error).__name__})"


def read_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint dict, with ``payload["config"]`` a TrainConfig (v1 files are converted on reading).

    FileNotFoundError / ValueError naming the path when the file is missing, unreadable or not ours.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many kinds (pickle, zip, EOF); its own text advises weights_only=False
        raise ValueError(f"{path}: not a readable course checkpoint: {_unreadable_reason(path, error)}") from None
    if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
        raise ValueError(f"{path}: not a diffusion-course checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    try:
        config = TrainConfig.from_dict(payload["config"] if payload["format"] == CHECKPOINT_FORMAT
                                       else _config_of_v1(payload))
        _check_dataset_record(payload.get("dataset"), config)
    except KeyError as error:
        raise ValueError(f"{path}: not a complete course checkpoint: the field {error} is missing") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: the stored config is inconsistent: {error}") from None
    return {**payload, "config": config}


def _check_dataset_record(dataset, config: TrainConfig) -> None:
    """ValueError unless ``dataset`` (a checkpoint's record of its training set) fits ``config``'s U-Net."""
    if not isinstance(dataset, dict):
        raise ValueError(f"dataset must be a dict with image_shape and class_names, got {type(dataset).__name__}")
    shape, names = dataset["image_shape"], dataset["class_names"]
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)):
        raise ValueError(f"dataset image_shape must be three positive ints [C, H, W], got {shape!r}")
    if shape[0] != config.unet.in_channels:
        raise ValueError(f"dataset image_shape {list(shape)} has {shape[0]} channels, but the U-Net takes "
                         f"in_channels={config.unet.in_channels}")
    classes = config.unet.num_classes
    if classes is not None and (not isinstance(names, (list, tuple)) or len(names) != classes):
        raise ValueError(f"dataset class_names must name the U-Net's num_classes={classes} classes, got {names!r}")


def load_checkpoint(path=DIFFUSION_ASSET, map_location="cpu"):
    """(model with the EMA weights, in eval mode; its NoiseSchedule; info dict) from a checkpoint file.

    info holds everything else: config (the TrainConfig), dataset (name, image_shape, class_names), step,
    loss_history, command, seconds, and latent (the autoencoder's payload for latent diffusion, else None).
    """
    payload = read_checkpoint(path, map_location)
    config = payload["config"]
    model = UNet(**asdict(config.unet))
    weights = payload["ema"]["shadow"] if payload.get("ema") else payload.get("model")
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: holds no weights (neither 'ema' nor 'model')")
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:    # torch lists every mismatch over many lines: the first names the problem
        first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
        raise ValueError(f"{path}: the weights do not fit the U-Net of the stored config "
                         f"({first.rstrip('.')})") from None
    info = {key: payload[key] for key in ("config", "dataset", "step", "loss_history", "command", "seconds")}
    info["latent"] = payload.get("latent")
    return model.to(map_location).eval(), config.make_schedule(), info
