"""Every extension point is one Registry: a new kind is one registration, reachable from
the configs and the command line; names are unique; the package has no import circle."""
import ast
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from helpers import small_transforms, tiny_resnet, tiny_set
from practise.adaptors import PLACEMENT_RULES, AdaptorSite, PlacementRule, adaptor_sites, register_placement_rule
from practise.cli import main
from practise.compress_report import CompressReport
from practise.criteria import CRITERIA, Criterion
from practise.data import SOURCES, NamedSource, TensorSource, build_tiny_set, open_source, register_source, source_preprocessing
from practise.latency import BACKENDS, EagerBackend, LatencyConfig, measure_variants, register_backend
from practise.pipeline import CompressConfig, compress
from practise.preprocessing import resolve_preprocessing
from practise.recovery import RECOVERY_METHODS, RecoveryConfig
from practise.registry import Registry
from practise.report import to_markdown
from practise.scoring import ScoringConfig
from practise.tracing import feature_chain, find_feature_layer, trace_model

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(scoring=ScoringConfig(iterations=2, batch_size=8), recovery=RecoveryConfig(iterations=2, batch_size=8),
            latency=LatencyConfig(repeats=2, warmup=0, batch_size=2))


@contextmanager
def registered(registry: Registry, name: str, entry):
    registry.register(name, entry)
    try:
        yield entry
    finally:
        registry.unregister(name)


def test_registry_refuses_duplicates_and_lists_the_valid_names():
    r = Registry("widget")
    r.register("a", 1)
    assert r.add("b")(2) == 2  # the decorator form gives back what it decorates
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        r.register("a", 3)
    with pytest.raises(ValueError, match=r"unknown widget 'c'; valid choices: a, b"):
        r.get("c")
    assert r["b"] == 2 and list(r) == ["a", "b"] and "a" in r and len(r) == 2
    for registry in (CRITERIA, BACKENDS, PLACEMENT_RULES, SOURCES, RECOVERY_METHODS):
        first = registry.names()[0]
        with pytest.raises(ValueError, match="already registered"):
            registry.register(first, registry.get(first))


def test_configs_name_the_valid_criteria_and_backends():
    with pytest.raises(ValueError, match="valid choices: practise, random, latency, cosine"):
        CompressConfig(num_blocks=1, criterion="greedy")
    with pytest.raises(ValueError, match="unknown latency backend 'tensorrt'; valid choices: eager, onnxruntime"):
        LatencyConfig(backend="tensorrt")


def last_blocks_first(inputs):
    return sorted(inputs.names, reverse=True)


def test_a_registered_criterion_drives_compress_without_scoring(tmp_path):
    with registered(CRITERIA, "last-first", Criterion(last_blocks_first, description="last block first")):
        result = compress(tiny_resnet(), tiny_set(16),
                          CompressConfig(num_blocks=2, criterion="last-first", **FAST), workdir=tmp_path)
    assert result.selection.blocks == ["layer3.2", "layer3.1"]
    assert result.scores == [] and not (tmp_path / "scores.json").exists()  # no recoverability was needed
    top = result.report.candidates[0]
    assert (top.name, top.rank, top.chosen, top.recoverability) == ("layer3.2", 1, True, None)
    assert "criterion last-first" in to_markdown(result.report)


def test_cli_criterion_flag(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(tiny_resnet().state_dict(), weights)
    data = tmp_path / "images"
    data.mkdir()
    from PIL import Image
    for i in range(6):
        Image.fromarray((torch.rand(16, 16) * 255).to(torch.uint8).numpy()).save(data / f"{i}.png")
    out = tmp_path / "out"
    code = main(["-q", "compress", "--model", "resnet20", "--weights", str(weights), "--data", str(data),
                 "--image-size", "16", "--mean", "0.5", "--std", "0.25", "--num-blocks", "1", "--criterion", "latency",
                 "--score-iterations", "1", "--recovery-iterations", "1", "--repeats", "2", "--warmup", "0",
                 "--batch-size", "2", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["criterion"] == "latency"
    assert all(c["recoverability"] is None for c in report["candidates"])
    assert report["selection"]["blocks"] == [report["candidates"][0]["name"]]


class CountingBackend(EagerBackend):
    name = "counting-eager"

    def __init__(self):
        self.prepared, self.synced = [], 0

    def prepare(self, model, variants, sample_shape, config, device):
        self.prepared.append(sorted(variants))
        return super().prepare(model, variants, sample_shape, config, device)

    def synchronize(self, device):
        self.synced += 1


def test_a_registered_latency_backend_times_every_variant():
    backend = CountingBackend()
    register_backend("counting-eager", backend)
    try:
        config = LatencyConfig(backend="counting-eager", repeats=3, warmup=1, batch_size=2)
        stats, settings = measure_variants(tiny_resnet(), (1, 16, 16), {"full": [], "drop": ["layer1.1"]}, config)
    finally:
        BACKENDS.unregister("counting-eager")
    assert backend.prepared == [["drop", "full"]] and set(stats) == {"full", "drop"}
    assert backend.synced == 2 * (3 + 1) * 2  # before and after every pass, warm-up included
    assert settings.backend == "counting-eager"


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class BodyRule(PlacementRule):
    """Adaptors on ``body``'s last conv (writers) and first conv (readers)."""

    name = "test-body"

    def sites(self, unit_name, unit, role, trace):
        if not isinstance(getattr(unit, "body", None), nn.Sequential):
            return None
        index = len(unit.body) - 1 if role == "writer" else 0
        conv = unit.body[index]
        return [AdaptorSite(f"{unit_name}.body.{index}", "after" if role == "writer" else "before",
                            conv.out_channels if role == "writer" else conv.in_channels)]


def test_a_registered_placement_rule_comes_before_the_generic_fallback():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Sequential(Residual(4), Residual(4), Residual(4)),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = torch.zeros(1, 1, 8, 8)
    trace = trace_model(model, x)
    chain = feature_chain(model, trace, find_feature_layer(model, trace), x)
    units = chain or trace.call_order
    generic = adaptor_sites(model, "1.1", trace, units)
    assert [s.module for s in generic] == ["1.0", "1.2"]  # on the stream: one adaptor per unit
    register_placement_rule("test-body", BodyRule)  # registered after the fallback, still tried first
    try:
        specific = adaptor_sites(model, "1.1", trace, units)
    finally:
        PLACEMENT_RULES.unregister("test-body")
    assert [(s.module, s.where) for s in specific] == [("1.0.body.2", "after"), ("1.2.body.0", "before")]


def checkerboard(argument: str) -> TensorSource:
    size = int(argument or 8)
    board = ((torch.arange(size)[:, None] + torch.arange(size)[None]) % 2 * 255).to(torch.uint8)
    return TensorSource(board.expand(4, 1, size, size).contiguous(), name=f"checkerboard:{size}")


def test_a_registered_data_source_opens_by_name_with_its_preprocessing():
    register_source("checkerboard", NamedSource(checkerboard, {"image_size": 12, "mean": [0.5], "std": [0.5]},
                                                 "checkerboard[:size]"))
    try:
        source = open_source("checkerboard:12")
        assert len(source) == 4 and source.load(0, 1).shape == (1, 12, 12)
        assert source_preprocessing("checkerboard:12") == {"image_size": 12, "mean": [0.5], "std": [0.5]}
        pre = resolve_preprocessing(tiny_resnet(), 1, "checkerboard:12")
        assert pre.transforms.config.image_size == 12 and pre.origins["mean"] == "the default for checkerboard:12"
        assert len(build_tiny_set(source, 2, torch.Generator().manual_seed(0), small_transforms(12))) == 2
    finally:
        SOURCES.unregister("checkerboard")
    with pytest.raises(FileNotFoundError):  # no longer a name: an image folder, which does not exist
        open_source("checkerboard:12")


def test_named_sources_reject_arguments_they_do_not_take():
    with pytest.raises(ValueError, match="gaussian-noise takes no argument"):
        open_source("gaussian-noise:3")


def package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (relative imports resolved)."""
    modules = {}
    for path in (ROOT / "practise").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):  # imports inside functions too
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).rstrip(".") \
                    if node.level else node.module
                deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_the_package_has_no_import_circle():
    graph = package_imports()
    assert graph["practise.data.catalog"] >= {"practise.data.fashion_mnist", "practise.data.out_of_domain"}
    assert "practise.demo" not in set().union(*(graph[m] for m in graph if m.startswith("practise.data")))
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", "import circle: " + " -> ".join(path + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("run", ["demo", "compress_folder"])
def test_committed_reports_round_trip_through_the_typed_report(run):
    folder = ROOT / "benchmarks" / "results" / run
    data = json.loads((folder / "report.json").read_text())
    report = CompressReport.from_dict(data)
    assert json.dumps(report.to_dict()) == json.dumps(data)
    assert to_markdown(report) == (folder / "report.md").read_text()


REGISTER_FUNCTIONS = ["register_criterion", "register_backend", "register_placement_rule", "register_recovery",
                      "register_source", "register_exporter", "register_model"]


@pytest.mark.parametrize("function", REGISTER_FUNCTIONS)
def test_every_kind_registers_the_same_way(function):
    """register_<kind>(name, entry) or @register_<kind>(name): one shape, exported at the top."""
    import inspect

    import practise

    register = getattr(practise, function)
    assert list(inspect.signature(register).parameters)[:2][0] == "name"
    assert len(inspect.signature(register).parameters) == 2
    registry = {"register_criterion": CRITERIA, "register_backend": BACKENDS, "register_placement_rule": PLACEMENT_RULES,
                "register_recovery": RECOVERY_METHODS, "register_source": SOURCES,
                "register_exporter": practise.export.EXPORTERS, "register_model": practise.models.MODELS}[function]
    entry = {"register_criterion": lambda inputs: list(inputs.names), "register_backend": EagerBackend,
             "register_placement_rule": BodyRule, "register_recovery": type(RECOVERY_METHODS.get("mimic")),
             "register_source": checkerboard, "register_exporter": practise.export.EXPORTERS.get("onnx"),
             "register_model": lambda: nn.Identity()}[function]
    try:
        assert register("shape-test-a")(entry) is entry  # decorator: gives back what it decorates
        register("shape-test-b", entry)                  # plain call
        assert {"shape-test-a", "shape-test-b"} <= set(registry.names())
        with pytest.raises(ValueError, match="already registered"):
            register("shape-test-b", entry)
        if hasattr(registry.get("shape-test-b"), "name") and not callable(registry.get("shape-test-b")):
            assert registry.get("shape-test-b").name == "shape-test-b"
    finally:
        for name in ("shape-test-a", "shape-test-b"):
            if name in registry:
                registry.unregister(name)
