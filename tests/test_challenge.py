"""The modular challenge end to end on a tiny task: every setting trained, steps to grok read from each sweep's own
traces, the leaderboard written, bad input refused."""

import json

import numpy as np

from cli_runner import run_main
from grokjax.analysis.leaderboard import steps_to


def test_challenge_trains_every_setting_and_ranks_them(tmp_path, capsys):
    from experiments.modular_challenge import main

    argv = ["--p", "7", "--methods", "baseline", "weight_decay", "--n-seeds", "3", "--steps", "40", "--log-every",
            "10", "--workers", "1", "--no-progress", "--no-compile-cache", "--out", str(tmp_path / "c")]
    code, out, err = run_main(main, argv, capsys)
    assert code == 0, err
    board = json.loads((tmp_path / "c" / "leaderboard.json").read_text())
    saved = np.load(tmp_path / "c" / "leaderboard.npz")
    assert set(board["methods"]) == {"baseline", "weight_decay"} and board["budget_steps"] == 40
    traces, seeds = np.load(tmp_path / "c" / "weight_decay" / "0" / "traces.npz"), \
        np.load(tmp_path / "c" / "weight_decay" / "0" / "seeds.npz")
    for g in range(2):  # the weight-decay grid (0.1, 1.0) is one sweep, two settings
        rows = seeds["grid_index"] == g
        np.testing.assert_array_equal(saved[f"weight_decay/{g}/steps_95"],
                                      steps_to(traces["epochs"], traces["heldout_acc"][rows], 0.95))
    row = board["methods"]["baseline"]
    assert row["steps_95"]["n_runs"] == 3 and row["speedup_95"]["ratio"] == 1.0
    assert "median steps to 95%" in out and row["dir"] == "baseline/0"
    from grokjax.figures import draw

    assert [p.name for p in draw(tmp_path / "c")[0]] == ["challenge_steps.png", "challenge_curves.png"]
    code, _, err = run_main(main, argv, capsys)
    assert code == 2 and "already exist" in err
    code, _, err = run_main(main, argv[:2] + ["--methods", "magic"] + argv[5:-1] + [str(tmp_path / "d")], capsys)
    assert code == 2 and "Unknown method magic" in err and "Traceback" not in err


def test_the_grokfast_preset_runs_its_three_methods_beside_the_published_steps(tmp_path, capsys):
    from experiments.modular_challenge import main
    from grokjax.run.challenge import grokfast_config

    cfg = grokfast_config(p=97)
    assert cfg.problem.op == "*" and cfg.model.block == "grokfast" and cfg.schedule.batch_size == 512
    assert cfg.optimizer.kind == "adam"
    assert (cfg.schedule.unit, cfg.schedule.warmup_steps, cfg.optimizer.lr) == ("steps", 10, 1e-3)
    argv = ["--preset", "grokfast", "--p", "5", "--n-seeds", "2", "--steps", "20", "--log-every", "10", "--workers",
            "1", "--no-progress", "--no-compile-cache", "--out", str(tmp_path / "g")]
    code, out, err = run_main(main, argv, capsys)
    assert code == 0, err
    board = json.loads((tmp_path / "g" / "leaderboard.json").read_text())
    assert {m: r["published_steps_95"] for m, r in board["methods"].items()} == \
        {"baseline": 39890, "grokfast_ma": 790, "grokfast_ema": 910}
    assert board["methods"]["grokfast_ma"]["best"]["weight_decay"] == 0.01 and "published: 790" in out
