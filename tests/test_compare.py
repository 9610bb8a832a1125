"""compare: statistics checked by hand, grouping, exclusions, artefacts, the CLI."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.data import ROOT

from mnist_cnn.compare import compare, describe, welch
from mnist_cnn.errors import UserError


def test_confidence_interval_by_hand():
    # mean 0.99, sd 0.01, sem 0.01/sqrt(3); t(0.975, df=2) = 4.302653 -> half-width 0.0248414
    d = describe([0.98, 0.99, 1.00])
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.99) and d["std"] == pytest.approx(0.01)
    assert d["ci95"] == pytest.approx([0.99 - 0.0248414, 0.99 + 0.0248414], abs=1e-7)


def test_welch_p_value_by_hand():
    # means 2.5 and 4.5, both variances 5/3: t = -2 / sqrt(5/6) = -2.19089, df = 6.
    # For df = 6, P(|T| < t) = sqrt(x) (1 + (1-x)/2 + 3(1-x)^2/8), x = t^2/(t^2+6) = 4/9,
    # = 2/3 * (1 + 5/18 + 25/216) = 301/324, so p = 23/324.
    result = welch([1, 2, 3, 4], [3, 4, 5, 6])
    assert result["p"] == pytest.approx(23 / 324, rel=1e-9)
    assert (
        result["diff"] == -2 and "not distinguishable from seed noise at n=4" in result["verdict"]
    )
    assert "significant" in welch([1, 1.1, 0.9, 1.05], [3, 3.1, 2.9, 3.05])["verdict"]


def test_too_few_runs_say_so_instead_of_nan():
    assert describe([0.5])["std"] is None and describe([0.5])["ci95"] is None
    assert welch([0.5], [0.6, 0.7])["p"] is None


def write_run(
    path: Path, seed: int, acc: float | None, lr: float = 1e-3, config: dict | None = None, **extra
) -> Path:
    """A completed run's metrics.json; `config` is merged into its config, `extra` beside it."""
    path.mkdir(parents=True)
    metrics = {
        "status": "completed",
        "seed": seed,
        "test/acc": acc,
        "test/loss": 0.05,
        "val/acc": 0.98,
        "weights_sha256": f"hash-{seed}-{lr}",
        "config": {
            "seed": seed,
            "optimizer": {"lr": lr},
            "data": {"batch_size": 128},
            "trainer": {"default_root_dir": str(path)},
        },
        **extra,
    }
    for section, values in (config or {}).items():
        existing = metrics["config"].get(section)
        metrics["config"][section] = (
            {**existing, **values} if isinstance(existing, dict) else values
        )
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


@pytest.fixture
def sweep(tmp_path):
    """Two learning rates x 3 seeds, plus failed, half-written, NaN, dead and running runs."""
    accs = {1e-3: [0.981, 0.983, 0.985], 3e-3: [0.990, 0.991, 0.992]}
    i = 0
    for lr, values in accs.items():
        for seed, acc in enumerate(values):
            write_run(tmp_path / str(i), seed, acc, lr)
            i += 1
    write_run(tmp_path / "failed", 9, 0.5, status="failed", error="diverged")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.json").write_text('{"status": "compl')
    write_run(tmp_path / "nan", 8, None)
    (tmp_path / "died" / ".hydra").mkdir(parents=True)
    write_run(tmp_path / "running", 7, None, status="running")
    return tmp_path


@pytest.mark.reliability("X2")
def test_groups_by_the_differing_key_with_matching_statistics(sweep):
    result = compare([str(sweep)])
    assert result["differing_keys"] == ["optimizer.lr"]  # not the seed, not the run's own dir
    groups = {g["group"]: g for g in result["groups"]}
    assert set(groups) == {"optimizer.lr=0.001", "optimizer.lr=0.003"}
    low = groups["optimizer.lr=0.001"]["test/acc"]
    assert (
        low["n"] == 3 and low["mean"] == pytest.approx(0.983) and low["std"] == pytest.approx(0.002)
    )
    [test] = result["tests"]
    assert test["p"] < 0.05 and "lower, significant" in test["verdict"]


def test_groups_can_be_named_by_chosen_keys(sweep):
    named = compare([str(sweep)], label_keys=["optimizer.lr", "trainer.max_epochs"])
    assert {g["group"] for g in named["groups"]} == {
        "optimizer.lr=0.001, trainer.max_epochs=None",
        "optimizer.lr=0.003, trainer.max_epochs=None",
    }
    # names that would merge two groups are not used
    merged = compare([str(sweep)], label_keys=["trainer.max_epochs"])
    assert {g["group"] for g in merged["groups"]} == {"optimizer.lr=0.001", "optimizer.lr=0.003"}


@pytest.mark.reliability("X1", "X3")
def test_bad_runs_listed_with_reasons_and_excluded(sweep):
    excluded = {Path(e["path"]).name: e["reason"] for e in compare([str(sweep)])["excluded"]}
    assert excluded["failed"] == "status failed: diverged"
    assert excluded["half"].startswith("metrics.json unreadable")
    assert excluded["nan"] == "test/acc is missing or not finite (None)"
    assert excluded["died"].startswith("no metrics.json")
    assert excluded["running"] == "still running (or killed)"


def test_same_seed_reruns_checked_for_bit_identity(tmp_path):
    write_run(tmp_path / "a", 1, 0.98)
    write_run(tmp_path / "b", 1, 0.98)
    write_run(tmp_path / "c", 1, 0.97)
    checks = compare([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")])[
        "reproducibility"
    ]
    assert [c["bit_identical"] for c in checks] == [True, False]
    assert checks[1]["max_metric_diff"] == pytest.approx(0.01)
    [group] = compare([str(tmp_path)])["groups"]
    assert group["test/acc"]["n"] == 1 and group["test/acc"]["mean"] == 0.98  # seed 1 counted once


@pytest.mark.reliability("X3")
def test_paths_given_twice_and_globs_are_deduplicated(sweep):
    result = compare([str(sweep / "0"), str(sweep / "0"), str(sweep / "[01]")])
    assert sum(g["test/acc"]["n"] for g in result["groups"]) == 2


def test_a_shells_metrics_json_paths_are_their_runs_and_another_file_is_refused(sweep):
    """`compare.py outputs/*/*/metrics.json`: the shell hands over the files, each a run."""
    files = sorted(str(p) for p in sweep.glob("*/metrics.json"))
    by_file, by_dir = compare(files), compare([str(sweep)])
    assert by_file["groups"] == by_dir["groups"]
    assert {e["path"] for e in by_file["excluded"]} == {
        e["path"]
        for e in by_dir["excluded"]
        if Path(e["path"]).name != "died"  # no metrics.json
    }
    (sweep / "0" / "train.log").write_text("epoch 1/3\n")
    with pytest.raises(UserError, match=r"train.log: a file, not a run or sweep directory; give"):
        compare([str(sweep / "0" / "train.log")])


def test_nothing_usable_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no completed run"):
        compare([str(tmp_path)])
    with pytest.raises(UserError, match="no such run or sweep directory"):
        compare([str(tmp_path / "missing")])


def test_cli_prints_the_table_and_writes_artefacts(sweep, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), str(sweep), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| optimizer.lr=0.001 | 3 | 98.30 ± 0.20% [" in proc.stdout
    assert "Welch p = " in proc.stdout and "Excluded:" in proc.stdout
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["n"] for r in rows] == ["3", "3"]
    assert json.loads((out / "comparison.json").read_text())["differing_keys"] == ["optimizer.lr"]
    assert (out / "comparison.png").stat().st_size > 1000
    bad = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    )


def test_dashboard_and_path_settings_do_not_split_a_group(tmp_path):
    from mnist_cnn.compare_report import markdown

    callbacks = {f"c{i}": {"_target_": f"x.C{i}", "k": i} for i in range(10)}
    write_run(
        tmp_path / "a", 1, 0.99, config={"callbacks": callbacks, "paths": {"output_dir": "a"}}
    )
    write_run(
        tmp_path / "b",
        2,
        0.98,
        config={"callbacks": {"c0": callbacks["c0"]}, "data": {"data_dir": "b"}},
    )
    result = compare([str(tmp_path)])
    assert len(result["groups"]) == 1 and result["differing_keys"] == []
    assert any(k.startswith("callbacks.") for k in result["ignored_differences"])
    text = markdown(result)
    assert "Not grouped by (no effect on the arithmetic): callbacks (" in text
    assert len([line for line in text.splitlines() if "callbacks" in line]) == 1


def test_the_seeds_of_a_budget_recipe_are_one_group_whatever_epochs_each_planned(tmp_path):
    """budget_seconds fixes trainer.max_epochs from each run's measured step, so the seeds of
    one budget recipe plan different epochs on a busy machine: they stay one group (with the
    planned epochs said), while runs whose epochs were set by hand are still grouped by them."""
    from mnist_cnn.compare_report import markdown

    rng = random.Random(28)
    planned = [rng.randint(10, 14) for _ in range(5)]
    planned[1] = planned[0] + 1  # at least two counts
    for seed, epochs in enumerate(planned):
        write_run(tmp_path / f"budget{seed}", seed, 0.995 + rng.uniform(-1e-3, 1e-3),
                  config={"budget_seconds": 300.0, "trainer": {"max_epochs": epochs}})  # fmt: skip
    for seed, epochs in ((0, 12), (1, 12), (0, 13), (1, 13)):
        write_run(tmp_path / f"fixed{epochs}-{seed}", seed, 0.99,
                  config={"budget_seconds": None, "trainer": {"max_epochs": epochs}})  # fmt: skip
    result = compare([str(tmp_path)])
    groups = {g["group"]: g for g in result["groups"]}
    budget = "budget_seconds=300.0, trainer.max_epochs=planned"
    assert set(groups) == {budget, "trainer.max_epochs=12", "trainer.max_epochs=13"}, set(groups)
    assert groups[budget]["test/acc"]["n"] == 5 and groups[budget]["seeds"] == list(range(5))
    assert groups["trainer.max_epochs=12"]["test/acc"]["n"] == 2
    assert result["planned_epochs"] == {budget: sorted(set(planned))}
    said = f"{budget}: {', '.join(map(str, sorted(set(planned))))}."
    assert said in markdown(result)


def test_a_planned_run_and_its_rerun_from_the_record_are_checked_for_the_same_bits(tmp_path):
    """`trainer.max_epochs=N budget_seconds=null` (or fastest_of=null and the chosen settings)
    reruns a plan: the request differs, the arithmetic does not, so compare.py pairs the two."""
    write_run(tmp_path / "planned", 3, 0.996, weights_sha256="w",
              config={"budget_seconds": 300.0, "trainer": {"max_epochs": 12}})  # fmt: skip
    write_run(tmp_path / "rerun", 3, 0.996, weights_sha256="w",
              config={"budget_seconds": None, "trainer": {"max_epochs": 12}})  # fmt: skip
    write_run(tmp_path / "longer", 3, 0.997, weights_sha256="x",
              config={"budget_seconds": None, "trainer": {"max_epochs": 13}})  # fmt: skip
    [check] = compare([str(tmp_path)])["reproducibility"]
    assert check["bit_identical"] and sorted(Path(r).name for r in check["runs"]) == [
        "planned", "rerun",
    ]  # fmt: skip
    chosen = {"model": {"conv1_channels": 16}}
    write_run(tmp_path / "chose", 4, 0.99, weights_sha256="c",
              config={**chosen, "fastest_of": {"wide": {"model.conv1_channels": 16}}})  # fmt: skip
    write_run(tmp_path / "chose_again", 4, 0.99, weights_sha256="c",
              config={**chosen, "fastest_of": None})  # fmt: skip
    checks = compare([str(tmp_path)])["reproducibility"]
    assert len(checks) == 2 and all(c["bit_identical"] for c in checks)


def test_same_seed_runs_a_group_counts_once_are_the_ones_whose_bits_are_checked(tmp_path):
    """Runs that differ in their dashboards or where their data lives form one group and count
    once; their bits were never compared, so three runs showed as n=1 without a word."""
    dashboards = {"callbacks": {"filters": {"top_k": 8}}, "data": {"data_dir": "/a"}}
    write_run(tmp_path / "dashboards", 5, 0.99, weights_sha256="w", config=dashboards)
    minimal = {"callbacks": {}, "data": {"data_dir": "/b"}}
    write_run(tmp_path / "minimal", 5, 0.99, weights_sha256="w", config=minimal)
    result = compare([str(tmp_path)])
    assert [len(g["runs"]) for g in result["groups"]] == [1]
    (check,) = result["reproducibility"]
    assert check["bit_identical"]
    assert sorted(Path(r).name for r in check["runs"]) == ["dashboards", "minimal"]


@pytest.mark.reliability("RF3")
def test_weight_averaging_is_the_recipes_and_the_dashboards_beside_it_are_not(tmp_path):
    """The average is what such a run tests and saves: runs with and without it are two groups,
    and same-seed runs of the two are not taken for reruns that differ without a cause."""
    ema = {"_target_": "lightning.pytorch.callbacks.EMAWeightAveraging", "decay": 0.99}
    for seed in (1, 2):
        write_run(tmp_path / f"plain{seed}", seed, 0.98, config={"callbacks": {"filters": {}}})
        for name, dashboards in (("ema", {}), ("ema-dashboards", {"filters": {"top_k": 8}})):
            write_run(
                tmp_path / f"{name}{seed}", seed, 0.99, weights_sha256=f"averaged-{seed}",
                config={"callbacks": {"ema": ema, **dashboards}},
            )  # fmt: skip
    result = compare([str(tmp_path)])
    labels = {g["group"]: len(g["runs"]) for g in result["groups"]}
    assert labels == {
        "without callbacks.ema": 2,
        "callbacks.ema=EMAWeightAveraging, callbacks.ema.decay=0.99": 2,
    }, labels
    pairs = {tuple(sorted(Path(r).name for r in c["runs"])) for c in result["reproducibility"]}
    assert pairs == {("ema-dashboards1", "ema1"), ("ema-dashboards2", "ema2")}, pairs
    assert all(c["bit_identical"] for c in result["reproducibility"])


@pytest.mark.reliability("RF3")
@pytest.mark.parametrize("tested,groups", [("best", 2), ("final", 1)])
def test_the_measure_of_the_tested_best_checkpoint_is_the_recipes(tmp_path, tested, groups):
    """Under test_ckpt=best the checkpoint callback's metric picks the weights tested; under
    final it only names files."""
    for seed in (1, 2):
        for monitor, mode in (("val/acc", "max"), ("val/loss", "min")):
            best = {"_target_": "mnist_cnn.callbacks.checkpoint.BestCheckpoint",
                    "monitor": monitor, "mode": mode}  # fmt: skip
            write_run(
                tmp_path / f"{mode}{seed}", seed, 0.98,
                weights_sha256=f"{mode}-{seed}" if tested == "best" else f"final-{seed}",
                config={"test_ckpt": tested, "callbacks": {"model_checkpoint": best}},
            )  # fmt: skip
    result = compare([str(tmp_path)])
    assert len(result["groups"]) == groups, [g["group"] for g in result["groups"]]
    # final: the same weights, counted once and checked; best: other weights, not paired
    checks = result["reproducibility"]
    assert len(checks) == (2 if tested == "final" else 0), checks
    assert all(c["bit_identical"] for c in checks)


def test_an_eval_run_among_the_runs_is_left_out_as_what_it_is(tmp_path):
    """Its numbers are its checkpoint's run's; the reason given was "val/acc is missing"."""
    for seed in (1, 2):
        write_run(tmp_path / f"run{seed}", seed, 0.98)
    write_run(tmp_path / "eval", 1, 0.98, task="eval", checkpoint="/x/run1/last.ckpt")
    write_run(tmp_path / "ensemble", 1, 0.99, task="eval", checkpoint=["/x/a.ckpt", "/x/b.ckpt"])
    result = compare([str(tmp_path)])
    assert [len(g["runs"]) for g in result["groups"]] == [2]
    reasons = {Path(e["path"]).name: e["reason"] for e in result["excluded"]}
    assert reasons == {
        "eval": "an eval.py test of /x/run1/last.ckpt, not a training run",
        "ensemble": "an eval.py test of /x/a.ckpt, /x/b.ckpt, not a training run",
    }, reasons


def test_an_accuracy_interval_stays_within_0_and_100_percent(tmp_path):
    d = describe([0.9999, 0.95], bounds=(0.0, 1.0))  # n=2: the raw t-interval passes 1
    assert d["ci95_clipped"] is True and 0.0 <= d["ci95"][0] <= d["ci95"][1] <= 1.0
    assert describe([0.98, 0.99, 0.985], bounds=(0.0, 1.0))["ci95_clipped"] is False


def test_several_comparisons_are_judged_after_holms_correction():
    from mnist_cnn.significance import holm

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, None]) == [0.2, None]


def test_three_groups_get_holm_adjusted_verdicts(tmp_path):
    for g, lr in enumerate((0.001, 0.002, 0.003)):
        for seed in range(3):
            write_run(tmp_path / f"g{g}s{seed}", seed, 0.98 + 0.005 * g + 0.001 * seed, lr=lr)
    tests = compare([str(tmp_path)])["tests"]
    assert len(tests) == 3
    for t in tests:
        assert t["p_holm"] >= t["p"] and "Holm's correction for 3 comparisons" in t["verdict"]


def test_a_rerun_that_differs_names_the_recorded_cause(tmp_path):
    from mnist_cnn.compare_report import markdown

    write_run(tmp_path / "serial", 0, 0.99, manifest={"torch_threads": 2})
    other = write_run(tmp_path / "joblib", 0, 0.985, manifest={"torch_threads": 2})
    m = json.loads((other / "metrics.json").read_text())
    m["manifest"]["torch_threads"] = 1
    m["weights_sha256"] = "other"
    (other / "metrics.json").write_text(json.dumps(m))
    (check,) = compare([str(tmp_path)])["reproducibility"]
    (cause,) = check["recorded_differences"]  # discovery order decides which run comes first
    assert not check["bit_identical"] and cause in ("torch threads 2 vs 1", "torch threads 1 vs 2")
    assert cause in markdown(compare([str(tmp_path)]))


def test_runs_on_part_of_the_test_set_are_kept_apart_unless_asked(tmp_path):
    write_run(tmp_path / "full", 0, 0.99)
    write_run(tmp_path / "smoke", 1, 0.80, config={"trainer": {"limit_test_batches": 0.1}})
    result = compare([str(tmp_path)])
    assert [g["runs"] for g in result["groups"]] == [[str(tmp_path / "full")]]
    (excluded,) = result["excluded"]
    assert "trainer.limit_test_batches=0.1" in excluded["reason"]
    pooled = compare([str(tmp_path)], include_subsets=True)
    assert sum(len(g["runs"]) for g in pooled["groups"]) == 2


def test_runs_without_a_validation_set_compare_on_the_test_set(tmp_path):
    """data.val_split=0 (the speedrun, the frontier) leaves val/acc null: such runs are compared,
    their val column says why it is empty; a null val/acc with a validation set still excludes."""
    no_val = {"data": {"val_split": 0.0}}
    for seed, acc in enumerate([0.990, 0.991]):
        write_run(tmp_path / f"a{seed}", seed, acc, 1e-3, config=no_val, **{"val/acc": None})
        write_run(
            tmp_path / f"b{seed}", seed, acc + 0.002, 3e-3, config=no_val, **{"val/acc": None}
        )
    write_run(tmp_path / "broken", 5, 0.99, 3e-3, **{"val/acc": None})  # has a validation split
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), str(tmp_path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("none (no validation set)") == 2
    assert "val/acc is missing or not finite" in proc.stdout  # the broken one, excluded
    rows = list(csv.DictReader((tmp_path / "r" / "comparison.csv").open()))
    assert [r["n"] for r in rows] == ["2", "2"] and all(r["val/acc mean"] == "" for r in rows)
    assert float(rows[1]["test/acc mean"]) - float(rows[0]["test/acc mean"]) == pytest.approx(0.002)


def test_a_sweep_of_partial_runs_only_is_compared_and_says_so(tmp_path):
    """The first sweep a user runs (`-m seed=1,2,3 +trainer.limit_train_batches=0.1`): every run
    is partial, so they are compared with each other (exit 0), and the report says so."""
    partial = {"trainer": {"limit_train_batches": 0.1}}
    for seed, acc in enumerate([0.91, 0.92, 0.90]):
        write_run(tmp_path / "sweep" / str(seed), seed, acc, config=partial)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), str(tmp_path / "sweep")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| 3 |" in proc.stdout and "Excluded" not in proc.stdout
    assert "part of the data (trainer.limit_train_batches=0.1)" in proc.stdout
    result = json.loads((tmp_path / "sweep" / "comparison.json").read_text())
    assert result["partial"] == ["trainer.limit_train_batches=0.1"] and not result["excluded"]
    # mixed with a full run, the partial ones are kept apart again
    write_run(tmp_path / "sweep" / "full", 9, 0.99)
    mixed = compare([str(tmp_path / "sweep")])
    assert [len(g["runs"]) for g in mixed["groups"]] == [1] and len(mixed["excluded"]) == 3
    assert mixed["partial"] == []


@pytest.mark.reliability("JSON1")
def test_compare_excludes_metrics_files_of_another_shape(tmp_path):
    from mnist_cnn.compare import compare

    good = tmp_path / "good"
    good.mkdir()
    (good / "metrics.json").write_text(
        json.dumps(
            {"status": "completed", "test/acc": 0.9, "test/loss": 0.3, "val/acc": 0.9, "seed": 1,
             "config": {"seed": 1, "a": {"b": 1}}}
        )
    )  # fmt: skip
    hostile = [
        "[]",
        "null",
        "7",
        '{"status": "completed", "config": []}',
        "[" * 100_000 + "]" * 100_000,
    ]
    for i, text in enumerate(hostile):
        (tmp_path / f"bad{i}").mkdir()
        (tmp_path / f"bad{i}" / "metrics.json").write_text(text)
    result = compare([str(tmp_path)])
    assert [g["runs"] for g in result["groups"]] == [[str(good)]]
    assert len(result["excluded"]) == len(hostile)


@pytest.mark.reliability("CMP1")
def test_compare_arguments_are_checked_and_paths_taken_literally(tmp_path):
    from mnist_cnn.cli.compare import main

    runs = tmp_path / "runs[1]"  # a glob would read this as runs1
    decoy = tmp_path / "runs1"
    for root, acc in ((runs, 0.9), (decoy, 0.1)):
        (root / "a").mkdir(parents=True)
        (root / "a" / "metrics.json").write_text(
            json.dumps(
                {
                    "status": "completed",
                    "test/acc": acc,
                    "test/loss": 0.3,
                    "val/acc": 0.9,
                    "seed": 1,
                    "config": {"seed": 1},
                }
            )
        )
    out = tmp_path / "out"
    main([str(runs), "--out", str(out)])
    written = json.loads((out / "comparison.json").read_text())
    assert written["groups"][0]["runs"] == [str(runs / "a")]
    for args, needle in (
        ([str(runs), "--baseline", "5"], "--baseline 5: there are 1 groups"),
        ([str(runs), "--out", str(out / "comparison.json")], "not a directory"),
    ):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2, needle


@pytest.mark.reliability("RF2")
def test_groups_on_different_datasets_are_not_tested_against_each_other(tmp_path):
    """MNIST and Fashion-MNIST runs: two groups, no Welch test between them (their difference is
    the dataset's), and the report says why; same-dataset groups are still tested."""
    from mnist_cnn.compare_report import markdown

    for seed, acc in enumerate([0.990, 0.991, 0.989]):
        write_run(tmp_path / f"m{seed}", seed, acc)
        write_run(
            tmp_path / f"f{seed}", seed, acc - 0.08, config={"data": {"dataset": "FashionMNIST"}}
        )
        write_run(tmp_path / f"m2{seed}", seed, acc + 0.001, 3e-3)
    result = compare([str(tmp_path)])
    assert len(result["groups"]) == 3
    tested = {frozenset((t["a"], t["b"])) for t in result["tests"]}
    assert len(tested) == 1  # the two MNIST groups only
    assert len(result["not_compared"]) == 2
    assert all("different datasets" in n["why"] for n in result["not_compared"])
    assert markdown(result).count("not tested, different datasets") == 2


@pytest.mark.reliability("RB4")
@pytest.mark.parametrize("seed", range(3))
def test_a_metric_outside_its_range_is_excluded_naming_it(tmp_path, seed):
    """Generated: an accuracy above 1 or below 0, or a negative loss. It was printed as a
    percentage above 100 and then crashed the chart; compare.py with the chart still exits 0."""
    import random

    rng = random.Random(seed)
    name, value = rng.choice(
        [("test/acc", rng.uniform(1.0001, 150)), ("test/acc", -rng.uniform(0.001, 1)),
         ("val/acc", rng.uniform(1.0001, 99)), ("test/loss", -rng.uniform(0.001, 5))]
    )  # fmt: skip
    for s in (1, 2, 3):
        write_run(tmp_path / f"good{s}", s, 0.98 + s / 1000)
    bad = write_run(tmp_path / "bad", 4, 0.98)
    metrics = json.loads((bad / "metrics.json").read_text())
    (bad / "metrics.json").write_text(json.dumps({**metrics, name: value}))
    excluded = {Path(e["path"]).name: e["reason"] for e in compare([str(tmp_path)])["excluded"]}
    assert excluded == {
        "bad": f"{name}={value!r} is outside " + excluded["bad"].split("outside ")[1]
    }
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "out").is_dir() and "is outside [" in proc.stdout


def test_cross_validated_recipes_are_chosen_on_paired_validation_folds(tmp_path):
    """Generated: two learning rates x 5 folds x 3 seeds. Each fold shifts both recipes alike
    (a fold effect); the better recipe is better by a small margin on every fold. Paired by
    (fold, seed) on val/acc the difference is significant; the variance split sees the folds."""
    import random

    rng = random.Random(3)
    fold_shift = [rng.uniform(-0.004, 0.004) for _ in range(5)]
    for lr, gain in ((0.001, 0.0), (0.003, 0.001)):
        for f in range(5):
            for seed in (1, 2, 3):
                val = 0.985 + fold_shift[f] + gain + rng.gauss(0, 0.0002)
                acc = 0.99 + rng.gauss(0, 0.0005)
                cv = {"data": {"folds": 5, "fold": f}}
                write_run(tmp_path / f"lr{lr}-f{f}-s{seed}", seed, acc, lr=lr, config=cv,
                          **{"val/acc": val})  # fmt: skip
    result = compare([str(tmp_path)])
    assert result["differing_keys"] == ["optimizer.lr"]  # the fold is a replicate, not a group
    [test] = result["tests"]
    assert test["test"] == "paired t" and test["metric"] == "val/acc" and test["p"] < 0.05
    group = result["groups"][0]
    assert group["test/acc"]["n"] == 15 and sorted(set(group["folds"])) == [0, 1, 2, 3, 4]
    assert set(group["per_fold"]) == {0, 1, 2, 3, 4}
    v = group["variance"]
    assert abs(v["fold"] + v["seed"] + v["residual"] - 1) < 1e-9
