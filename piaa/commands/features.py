"""`piaa features extract|backbones`: turn image folders into feature stores."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from piaa.commands.output import note, out

app = typer.Typer(no_args_is_help=True, help="Image features: extract a feature store, list backbones.")


@app.command("extract")
def features_extract(
    images: Path = typer.Option(..., "--images", help="Folder of images (searched recursively)."),
    backbone: str = typer.Option(..., "--backbone", help="Backbone name (see `piaa features backbones`)."),
    out_dir: Path = typer.Option(..., "--out", help="Feature store to write (re-run with the same --out to resume)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local weights file (.pth/.safetensors), or 'random' for a seeded random init."),
    download: bool = typer.Option(False, "--download", help="Allow fetching published weights when not cached locally."),
    batch_size: int = typer.Option(32, "--batch-size"),
    float16: bool = typer.Option(False, "--float16", help="Store features as float16 (half the size)."),
    workers: int = typer.Option(1, "--workers", help="Threads decoding images."),
    shard_size: int = typer.Option(512, "--shard-size", help="Images per committed shard (work lost on a kill is at most one shard)."),
    seed: int = typer.Option(0, "--seed", help="Seed for --weights random."),
    overwrite: bool = typer.Option(False, "--overwrite", "--force", help="Replace a finished store at --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Turn a folder of images into a feature store: batched, resumable, unreadable images reported."""
    from piaa.features.extract import extract_features

    result = extract_features(
        images, backbone, out_dir, weights=weights, download=download, seed=seed, batch_size=batch_size, float16=float16,
        shard_size=shard_size, workers=workers, progress=progress, overwrite=overwrite,
    )
    from piaa.distributed import env_rank

    if env_rank() != 0:  # under torchrun, rank 0 reports
        return
    out.print(
        f"{result.backbone}: {result.n_images:,} images x {result.dim} features -> {result.path} "
        f"(computed {result.n_computed:,}, reused {result.n_reused:,} from an earlier run)",
        soft_wrap=True,
    )
    if result.n_failed:
        note(f"{result.n_failed} unreadable image(s) skipped, listed in {result.path / 'failed.csv'}", "warning")


@app.command("backbones")
def features_backbones() -> None:
    """List the feature backbones and what they need."""
    from piaa.features import list_backbones

    table = Table(title="backbones")
    table.add_column("name")
    table.add_column("what it computes")
    table.add_column("needs")
    for name, spec in list_backbones().items():
        needs = "nothing" if not spec.needs else f"pip install 'piaa[{spec.needs}]' --extra-index-url https://download.pytorch.org/whl/cpu (or make install-vision)" + (" (installed)" if spec.available() else "")
        table.add_row(name, spec.summary, needs)
    out.print(table)
