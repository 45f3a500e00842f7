"""`ovi-bench run`, `verify` and `bank`: the commands that make images, embeddings and banks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ovi_bench.cli.application import (
    PluginsOption,
    app,
    check_device_option,
    comma_separated,
    console,
    errors,
    quiet_libraries,
    show_results,
    show_table,
)
from ovi_bench.errors import OviBenchError
from ovi_bench.paths import expand_user
from ovi_bench.progress import silence_library_notices, silence_library_progress
from ovi_bench.registry import load_plugins
from ovi_bench.spaces import DEFAULT_SPACE


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="TOML run spec, e.g. configs/smoke.toml.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default: the spec's output_dir).")
    ] = None,
    compbench_dir: Annotated[
        Path | None,
        typer.Option(
            "--compbench-dir",
            help="Folder with the official T2I-CompBench++ prompt files (else $OVI_BENCH_COMPBENCH_DIR, "
            "else a verified download).",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bars or messages, the model libraries' included."),
    ] = False,
    every_row: Annotated[
        bool,
        typer.Option("--every-row", help="Print every leaderboard row, not only the official-metric table."),
    ] = False,
    plugins: PluginsOption = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="Override prompts.limit: the first N prompts per category."),
    ] = None,
    prior_names: Annotated[
        list[str] | None,
        typer.Option(
            "--priors",
            metavar="NAME[,NAME...]",
            help="Keep only these priors of the spec, by label or registered name (repeatable).",
        ),
    ] = None,
    categories: Annotated[
        list[str] | None,
        typer.Option(
            "--categories",
            metavar="CATEGORY[,CATEGORY...]",
            help="Override prompts.categories (repeatable).",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help='Override device: "auto", "cpu", "cuda", "cuda:1", ...')
    ] = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", help="Override dtype: float32, float16 or bfloat16.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Override prior_batch_size, decoder_batch_size and metric_batch_size."
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="First re-hash every stored image and embedding and make again what differs."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the plan (images per prior × category and how many are stored, models and whether each is "
            "cached, data files, metrics) after the preflight, and exit without generating anything.",
        ),
    ] = False,
) -> None:
    """Generate, score and rank: everything already in the run folder is reused.

    --limit, --priors, --categories, --device, --dtype and --batch-size replace spec fields and enter the
    fingerprint exactly as those fields would."""
    if quiet:
        silence_library_progress()
    silence_library_notices()
    from ovi_bench.overrides import SpecOverrides
    from ovi_bench.provenance import write_results
    from ovi_bench.runner import Runner
    from ovi_bench.spec import load_spec

    load_plugins(plugins or [])  # before the spec: its component names must resolve
    spec = load_spec(config)
    overrides = SpecOverrides(
        limit=limit,
        priors=comma_separated(prior_names),
        categories=comma_separated(categories),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    overridden = overrides.apply(spec)  # first: a bad value is refused before anything is printed
    for line in overrides.describe(spec) if not quiet else []:
        errors.print(f"override: {escape(line)}", highlight=False, soft_wrap=True)
    spec = overridden
    if spec.trust_remote_code:
        errors.print(
            "[yellow]warning:[/] trust_remote_code = true: components may run Python code from model repositories.",
            highlight=False,
        )
    runner = Runner(
        spec,
        expand_user(out) if out else None,
        data_dir=compbench_dir,
        console=errors,
        show_progress=not quiet,
        verify=verify,
    )
    if dry_run:
        from ovi_bench.preflight import plan_tables, preflight

        report = preflight(runner, with_plan=True)
        lines, tables = plan_tables(report)
        for line in lines:
            console.print(escape(line), soft_wrap=True, highlight=False)
        for title, frame in tables:
            show_table(frame, title, text_columns=(frame.columns[0], "status", "where", "for", "categories"))
        report.raise_if_blocked()
        return
    with runner.folder_lock():  # held until the result files are written too
        result = runner.run()
        if result is None:  # another process of a multi-process launch: the main process writes the results
            return
        board = write_results(result)
    show_results(board, f"{spec.name} · spec {spec.fingerprint()[:12]}", every_row)
    console.print(f"results in {result.output_dir}")


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `ovi-bench run`.")],
) -> None:
    """Re-hash every stored image against the manifest and read back every embedding; remove what is damaged, so
    that the next `ovi-bench run` makes it again. Exit 0 if everything is intact, 1 if something was damaged."""
    from ovi_bench.run_folder import verify_run_folder

    report = verify_run_folder(expand_user(run_dir))
    for line in report.lines():
        console.print(escape(line), highlight=False, soft_wrap=True)
    raise typer.Exit(1 if report.damaged else 0)


# ---------------------------------------------------------------------------------------------------------------------
# ovi-bench bank: embedding banks of real images (for the OVI constraints and the diagnostics).

bank_app = typer.Typer(
    name="bank",
    help="Build and inspect embedding banks: real images encoded by a prior's image encoder.",
    no_args_is_help=True,
)
app.add_typer(bank_app, name="bank")


@bank_app.command("build")
def bank_build(
    encoder: Annotated[
        str,
        typer.Option(
            "--encoder",
            help="The space's CLIP towers whose image encoder embeds the images: hub id "
            '(kandinsky-community/kandinsky-2-2-prior in the default space), local folder, or "tiny".',
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Bank folder (new, empty, or an unfinished build to resume).")
    ],
    images: Annotated[
        Path | None,
        typer.Argument(help="Folder of .png/.jpg/.jpeg/.webp/.bmp images, searched recursively."),
    ] = None,
    hf_dataset: Annotated[
        str | None,
        typer.Option(
            "--hf-dataset",
            help="Instead of IMAGES: a Hugging Face data set name or a save_to_disk folder (needs `pip install datasets`).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Data set split (with --hf-dataset).")] = "train",
    image_column: Annotated[
        str, typer.Option("--image-column", help="Data set image column (with --hf-dataset).")
    ] = "image",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per encoder call.")] = 64,
    device: Annotated[str, typer.Option("--device", help='"auto", "cpu", "cuda", "cuda:1", ...')] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="float32, float16 or bfloat16 (GPU).")] = "float32",
    shard_size: Annotated[
        int, typer.Option("--shard-size", help="Images per shard file (the unit of resuming).")
    ] = 4096,
    description: Annotated[
        str | None, typer.Option("--description", help="Short description of the images, kept in bank.json.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars, the model libraries' included.")
    ] = False,
    space: Annotated[
        str,
        typer.Option(
            "--space",
            help="Embedding space of the encoder (`ovi-bench spaces`); the bank serves priors of this space only.",
        ),
    ] = DEFAULT_SPACE,
) -> None:
    """Encode images into an embedding bank; a killed build resumes when the same command runs again."""
    import warnings

    if quiet:
        silence_library_progress()
    from ovi_bench.bank.build import build_bank
    from ovi_bench.bank.sources import HFDatasetImages, ImageFiles, ImageSource

    if (images is None) == (hf_dataset is None):
        raise OviBenchError("give either an IMAGES folder or --hf-dataset NAME_OR_FOLDER (exactly one).")
    check_device_option(device)  # before the source: listing a large folder or data set takes a while
    # The source first: a wrong images folder is reported before the model libraries load (seconds).
    source: ImageSource = (
        ImageFiles.from_folder(images)
        if images is not None
        else HFDatasetImages(hf_dataset, split=split, image_column=image_column)
    )
    quiet_libraries()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        bank = build_bank(
            source,
            encoder,
            out,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            shard_size=shard_size,
            progress=not quiet,
            description=description,
            space=space,
        )
    for warning in caught:  # the unreadable images, as a message rather than Python's warning format
        errors.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
    report = bank.build_report
    console.print(
        f"bank {bank.path}: {bank.info.count} embeddings of width {bank.info.dim}, digest {bank.info.digest[:16]}"
    )
    if report is not None:
        console.print(
            f"encoded {report.shards_encoded} shard(s) ({report.images_encoded} images), "
            f"kept {report.shards_reused} already finished; {len(report.skipped)} unreadable image(s) skipped"
        )


@bank_app.command("info")
def bank_info(
    folder: Annotated[Path, typer.Argument(help="Bank folder made by `ovi-bench bank build`.")],
) -> None:
    """Print what a bank holds: count, width, encoder, digest, sources, and the cached statistics' shrinkage."""
    from ovi_bench.bank.folder import EmbeddingBank

    bank = EmbeddingBank.load(folder)
    info = bank.info
    lines = [
        ("folder", str(bank.path)),
        ("count", str(info.count)),
        ("dim", str(info.dim)),
        ("space", info.space),
        ("encoder", info.encoder),
        ("encoder identity", info.encoder_identity),
        ("digest", info.digest),
        ("created", info.created),
        ("sources", "; ".join(info.sources)),
        ("skipped images", str(len(bank.skipped))),
    ]
    for normalised, label in ((False, "shrinkage (raw)"), (True, "shrinkage (normalised)")):
        statistics = bank.cached_statistics(normalised)
        lines.append((label, f"{statistics.shrinkage:.6g}" if statistics else "not computed yet"))
    for key, value in lines:
        # Plain print: "key<TAB>value" lines stay machine-readable.
        print(f"{key}\t{value}")
