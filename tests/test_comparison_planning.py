"""benchmarks/comparison.py's cell planning: which recovery cells a plan yields, named how."""
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from comparison import IN_DOMAIN, METHODS, SINGLE, Cell, Settings, plan_cells, selection_key

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
NAMES = ["stage.0", "stage.1"]


def settings(**overrides) -> Settings:
    base = dict(sizes=(10,), seeds=(0, 1), targets=(0.2, 0.3), single_size=10, single_iterations=7,
                sources=("photo-crops",), source_sizes=(10,), source_methods=("practise", "practise_ce", "practise_indomain",
                                                                             "channels_mimic"))
    return Settings(**{**base, **overrides})


def plan_data(s: Settings, channels_reachable: bool = True) -> dict:
    """Selections for every criterion and tiny set, channel ratios, tiny sets (the source's unlabelled)."""
    selections = {}
    for target in s.targets:
        t = f"t{round(100 * target)}"
        for n in s.sizes:
            for seed in s.seeds:
                for criterion in ("practise", "random", "latency", "cosine"):
                    selections[selection_key(criterion, n, seed, t)] = {"blocks": [NAMES[seed % 2]]}
                    selections[selection_key(criterion, n, seed, t, "photo-crops")] = {"blocks": ["stage.1"]}
    ratio = {"ratio": 0.5} if channels_reachable else {"unreachable": "too slow"}
    channels = {f"channels-{v}-t{round(100 * t)}": dict(ratio) for v in ("inner", "features", "features-r8")
                for t in s.targets}
    tiny_sets = {f"N{n}-s{seed}": {"labels_per_class": [1] * 10} for n in s.sizes for seed in s.seeds}
    tiny_sets |= {f"photo-crops-N{n}-s{seed}": {"labels_per_class": None} for n in s.source_sizes for seed in s.seeds}
    return {"selections": selections, "channels": channels, "tiny_sets": tiny_sets}


def cells_by_name(s: Settings, data: dict) -> dict:
    return {p.cell.name: p for p in plan_cells(data, NAMES, s)}


def test_every_method_at_the_first_target_and_only_secondary_ones_after():
    s = settings()
    cells = cells_by_name(s, plan_data(s))
    first = {name.rsplit("-", 3)[0] for name in cells if name.endswith("-t20") and "photo-crops" not in name}
    second = {name.rsplit("-", 3)[0] for name in cells if name.endswith("-t30")}
    in_domain = {m.name for m in METHODS.values() if not m.in_domain_selection}
    assert first == in_domain
    assert second == {m.name for m in METHODS.values() if m.secondary}
    assert "practise_kd-N10-s0-t30" not in cells and "practise_kd-N10-s0-t20" in cells


def test_specs_carry_the_planned_blocks_and_channel_ratios():
    s = settings()
    cells = cells_by_name(s, plan_data(s))
    assert cells["practise-N10-s1-t20"].spec == {"kind": "blocks", "blocks": ["stage.1"],
                                                 "selection": "practise-N10-s1-t20", "recovery": "mimic",
                                                 "n": 10, "seed": 1}
    assert cells["random-N10-s0-t30"].spec["selection"] == "random-s0-t30"      # one per seed
    assert cells["latency-N10-s1-t30"].spec["selection"] == "latency-t30"       # one per target
    r8 = cells["channels_r8_ce-N10-s0-t20"].spec
    assert (r8["kind"], r8["scope"], r8["round_to"], r8["ratio"], r8["recovery"]) == ("channels", "features", 8, 0.5, "ce")
    assert "round_to" not in cells["channels_mimic-N10-s0-t20"].spec


def test_unreachable_channel_ratios_and_unplanned_selections_give_no_cells():
    s = settings()
    data = plan_data(s, channels_reachable=False)
    del data["selections"]["cosine-N10-s1-t20"]
    cells = cells_by_name(s, data)
    assert not any(name.startswith("channels") for name in cells)
    assert "cosine-N10-s1-t20" not in cells and "cosine-N10-s0-t20" in cells


def test_source_cells_select_on_the_source_skip_ce_without_labels_and_keep_the_diagnostic_in_domain():
    s = settings()
    cells = cells_by_name(s, plan_data(s))
    source = {n: c for n, c in cells.items() if c.cell.source == "photo-crops"}
    assert set(source) == {"practise-photo-crops-N10-s0-t20", "practise-photo-crops-N10-s1-t20",
                           "practise_indomain-photo-crops-N10-s0-t20", "practise_indomain-photo-crops-N10-s1-t20",
                           "channels_mimic-photo-crops-N10-s0-t20", "channels_mimic-photo-crops-N10-s1-t20"}
    assert source["practise-photo-crops-N10-s0-t20"].spec["selection"] == "practise-photo-crops-N10-s0-t20"
    assert source["practise_indomain-photo-crops-N10-s1-t20"].spec["selection"] == "practise-N10-s1-t20"
    assert all(c.spec["source"] == "photo-crops" for c in source.values())


def test_single_block_cells_and_the_teacher_come_last():
    s = settings()
    planned = plan_cells(plan_data(s), NAMES, s)
    assert [p.cell.name for p in planned[-3:]] == ["single_stage.0-N10-s0", "single_stage.1-N10-s0", "teacher"]
    assert planned[-2].cell.method is SINGLE and planned[-2].spec["iterations"] == 7
    assert planned[-1].cell.method is None and planned[-1].spec == {"kind": "teacher"}


def test_cell_names_and_settings_round_trip():
    assert Cell(METHODS["cosine"], 50, 2, 0.22, "sklearn-digits").name == "cosine-sklearn-digits-N50-s2-t22"
    assert Cell(METHODS["practise"], 100, 0, 0.4, IN_DOMAIN).name == "practise-N100-s0-t40"
    s = settings()
    assert Settings.from_dict(json.loads(json.dumps(asdict(s)))) == s
    assert Settings.from_dict({"sizes": [1], "stage": "plan"}).sizes == (1,)  # lists -> tuples, unknown keys ignored


@pytest.mark.parametrize("run", ["comparison", "comparison_2000its"])
def test_committed_plans_are_reproduced_cell_for_cell(run):
    data = json.loads((RESULTS / run / "plan.json").read_text())
    planned = plan_cells(data, list(data["latency"]["r_b"]), Settings.from_dict(data["settings"]))
    assert {p.cell.name: p.spec for p in planned} == data["cells"]
