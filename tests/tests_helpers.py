"""Constants and helpers shared by test modules (conftest fixtures use them too)."""

import sys

from piaa.tasks.simulate import DemoSpec

# Small enough to train in a second or two, large enough for 10- and 100-shot episodes.
TINY = DemoSpec(
    n_train_raters=40, n_test_raters=6, n_personality_raters=12, train_ratings=(40, 90),
    test_ratings=(112, 140), likes_per_personality_rater=20, feature_dim=32, latent_dim=8,
)
FAST = ["epochs=15", "hidden=32,16"]


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """Run `piaa ARGS` in-process (wide console): (exit status, stdout, stderr)."""
    from piaa.console import cli

    monkeypatch.setattr(sys, "argv", ["piaa", *args])
    monkeypatch.setattr(cli.out, "width", 200, raising=False)
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
