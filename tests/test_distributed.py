"""Scoring spread over a 2-process gloo group on the loopback interface (spawned here): the
same scores as one process, and a rank killed mid-run leaves its blocks for the rerun."""
import json
import socket

import pytest
import torch.multiprocessing as mp

from distributed_worker import score
from practise.distributed import ScoringGroup

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, workdir, out, die: bool = False) -> None:
    mp.spawn(score, args=(world, free_port(), str(workdir), str(out), die), nprocs=world, join=True)


def scores(path) -> dict:
    return json.loads(path.read_text())


def test_sharding_is_deterministic_round_robin():
    names = [f"b{i}" for i in range(7)]
    shares = [ScoringGroup(rank=r, world_size=3).shard(names) for r in range(3)]
    assert shares == [["b0", "b3", "b6"], ["b1", "b4"], ["b2", "b5"]]
    assert sorted(sum(shares, [])) == sorted(names)


def test_two_ranks_give_the_same_scores_as_one_process(tmp_path):
    run(1, tmp_path / "one", tmp_path / "one.json")
    run(2, tmp_path / "two", tmp_path / "two.json")
    one, two = scores(tmp_path / "one.json"), scores(tmp_path / "two.json")
    assert one["threads"] == 1 and two["threads"] == 1  # one thread per process in both runs
    assert set(one["blocks"]) == set(two["blocks"]) and len(one["blocks"]) >= 4
    for block, result in one["blocks"].items():  # bit-identical on CPU, whichever rank scored it
        assert two["blocks"][block]["recoverability"] == result["recoverability"], block
        assert two["blocks"][block]["mse_before"] == result["mse_before"], block
    assert {r["rank"] for r in two["blocks"].values()} == {0, 1}
    merged = json.loads((tmp_path / "two" / "scores.json").read_text())["blocks"]
    assert set(merged) == set(one["blocks"])  # rank 0 merged every rank's work into the one cache
    assert not list((tmp_path / "two").glob("scores.json.rank*"))


def test_a_rank_killed_mid_run_leaves_its_finished_blocks_and_the_rerun_resumes(tmp_path):
    with pytest.raises(Exception):  # rank 1 dies after its first block; the run fails
        run(2, tmp_path / "work", tmp_path / "failed.json", die=True)
    left = {}
    for rank_file in (tmp_path / "work").glob("scores.json.rank*"):
        left.update(json.loads(rank_file.read_text())["blocks"])
    assert any(r["rank"] == 1 for r in left.values())  # the dead rank's first block survived
    run(1, tmp_path / "work", tmp_path / "resumed.json")
    resumed = scores(tmp_path / "resumed.json")["blocks"]
    for block, result in left.items():  # not scored again: the same entry, time and all
        assert resumed[block] == result
    run(1, tmp_path / "fresh", tmp_path / "fresh.json")
    fresh = scores(tmp_path / "fresh.json")["blocks"]
    assert {b: r["recoverability"] for b, r in resumed.items()} == {b: r["recoverability"] for b, r in fresh.items()}


def test_compress_under_torchrun_records_the_world_and_who_scored_what(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "practise", "compress", "--model", "resnet20", "--in-channels", "1", "--num-classes", "10",
               "--data", "demo:train", "--num-images", "24", "--num-blocks", "2", "--score-iterations", "3",
               "--recovery-iterations", "2", "--repeats", "3", "--max-repeats", "6", "--device", "cpu",
               "--out", str(out), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2
    assert {c["scoring_rank"] for c in report["candidates"]} == {0, 1}
    assert {c["scoring_device"] for c in report["candidates"]} == {"cpu"}
    assert done.stdout.count("dropped blocks") == 1  # rank 0 alone reports


def test_ranks_given_different_data_stop_before_any_work_with_one_line(tmp_path):
    from distributed_worker import run_cli
    from helpers import write_png_folder

    folders = [write_png_folder(tmp_path / f"data{r}", seed=r) for r in range(2)]  # same names, other pixels
    argvs = [["score", "--model", "resnet20", "--in-channels", "1", "--num-classes", "10", "--image-size", "16",
              "--data", str(folders[0]), "--score-iterations", "2", "--device", "cpu", "-q"] for _ in range(2)]
    argvs[1] = [a.replace("data0", "data1") for a in argvs[0]]
    mp.spawn(run_cli, args=(2, free_port(), argvs, str(tmp_path / "result")), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"result.rank{r}").read_text()) for r in range(2)]
    assert [r["code"] for r in results] == [2, 2]
    assert results[1]["stderr"] == ""  # one line in all, from rank 0
    lines = results[0]["stderr"].strip().splitlines()
    assert len(lines) == 1 and "the ranks of this torchrun job differ" in lines[0]
