"""Video loading throughput next to the training step's consumption rate, measured in one run.

Loader: decoded + augmented clips/s of `jepa_world.data.video.dataset.VideoClipDataset` (16 frames, 4 apart, random
resized crop to 224 px, flip, normalisation) through a DataLoader fed by `StepSampler`, with 0, 1 and 2 worker
processes, for each installed reader. Model: clips/s consumed by a ViT-tiny video JEPA step (forward, backward,
AdamW step, as in `jepa_world.training`) on random clips of the same shape. The issue's target: with 2 workers the
loader delivers at least 2x what the model consumes.

Without ``--videos`` a folder of synthetic H.264 videos (moving shapes over a gradient, 480x360, 30 fps, 5 s) is
written first; pass ``--videos DIR`` for real files (the table names which).

    python scripts/bench_video.py [--videos DIR] [--seconds 20] [--batch 4] [--workers 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from jepa_world.config import load_config
from jepa_world.data.index import read_index
from jepa_world.data.sampler import StepSampler
from jepa_world.data.video.dataset import VideoClipDataset
from jepa_world.data.video.readers import reader_available
from jepa_world.factory import build_jepa, build_masks
from jepa_world.training import param_groups


def write_synthetic_videos(folder: Path, *, count: int, size: tuple[int, int], frames: int, fps: int) -> None:
    """Moving shapes over a moving gradient, H.264 (libx264 defaults: crf 23, B-frames, GOP 250)."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    for v in range(count):
        path = folder / f"synthetic_{v:02d}.mp4"
        centres = rng.uniform(0.2, 0.8, (3, 2)) * (width, height)
        velocity = rng.uniform(-4, 4, (3, 2))
        colours = rng.integers(0, 256, (3, 3))
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                base = (xx + 2 * t) % width / width * 160 + yy / height * 60
                img = np.repeat(base[..., None], 3, axis=2)
                for c, (cx, cy) in enumerate(centres + t * velocity):
                    cx, cy = cx % width, cy % height
                    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < (20 + 10 * c) ** 2
                    img[inside] = colours[c]
                frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def loader_rate(index: Path, *, reader: str, workers: int, batch: int, seconds: float, frames: int, size: int) -> float:
    """Clips/s delivered by the DataLoader after the first batch (worker start-up excluded)."""
    ds = VideoClipDataset(index=index, frames_per_clip=frames, frame_step=4, image_size=size, reader=reader)
    sampler = StepSampler(dataset_size=len(ds), micro_batch_size=batch, seed=0)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, persistent_workers=workers > 0)
    it = iter(loader)
    next(it)
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or clips < 2 * batch:
        item = next(it)
        clips += item["x"].shape[0]
        assert int(item["skipped"].sum()) == 0
    rate = clips / (time.perf_counter() - start)
    del it, loader
    return rate


def model_rate(*, batch: int, steps: int, frames: int, size: int) -> tuple[float, float]:
    """(clips/s, seconds per step) of a ViT-tiny video JEPA training step on CPU/GPU."""
    cfg = load_config(
        [],
        [
            "model.name=vit_tiny",
            "model.patch_size=16",
            f"data.image_size={size}",
            f"data.num_frames={frames}",
        ],
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_jepa(cfg).to(device)
    masks = build_masks(cfg, model.encoder.grid_size)
    optimizer = torch.optim.AdamW(param_groups([model.encoder, model.predictor]), lr=1e-4)
    x = torch.randn(batch, 3, frames, size, size, device=device)

    def step(i: int) -> None:
        loss, _ = model({"x": x, "masks": [m.to(device) for m in masks(batch, step=i)]})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(0)  # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(i + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / steps
    return batch / per_step, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, help="folder or index of real videos (default: synthetic H.264)")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per loader configuration")
    parser.add_argument("--batch", type=int, default=4, help="clips per loader batch")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    parser.add_argument("--readers", default="decord,pyav", help="comma-separated readers")
    parser.add_argument("--model-batch", type=int, default=2, help="clips per training step")
    parser.add_argument("--model-steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    tmp = None
    if args.videos is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_video_")
        index = Path(tmp.name)
        write_synthetic_videos(index, count=8, size=(480, 360), frames=150, fps=30)
        source = "8 synthetic H.264 videos, 480x360, 30 fps, 150 frames (libx264 defaults)"
    else:
        index = args.videos
        source = f"{len(read_index(index))} videos from {index}"

    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), torch threads {torch.get_num_threads()}, CUDA: "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}"
    )
    print(f"videos: {source}; clips: {args.frames} frames x {args.size} px, frame_step 4, batch {args.batch}")

    rows = []
    for reader in [r.strip() for r in args.readers.split(",")]:
        if not reader_available(reader):
            print(f"reader {reader}: not installed, skipped")
            continue
        for workers in [int(w) for w in args.workers.split(",")]:
            rate = loader_rate(
                index,
                reader=reader,
                workers=workers,
                batch=args.batch,
                seconds=args.seconds,
                frames=args.frames,
                size=args.size,
            )
            rows.append((reader, workers, rate))
            print(f"  loader {reader:6s} workers={workers}: {rate:6.2f} clips/s", flush=True)
    consume, per_step = model_rate(batch=args.model_batch, steps=args.model_steps, frames=args.frames, size=args.size)
    print(f"  ViT-tiny video JEPA step: {per_step:.2f} s per {args.model_batch} clips = {consume:.2f} clips/s")

    print("\n| reader | workers | loader clips/s | ViT-tiny step clips/s | loader / model |")
    print("|---|---|---|---|---|")
    for reader, workers, rate in rows:
        print(f"| {reader} | {workers} | {rate:.2f} | {consume:.2f} | {rate / consume:.1f}x |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
