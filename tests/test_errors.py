"""How errors reach the user: what the user gave (PractiseError kinds, OSError) is one
line and exit 2 with flags named; anything else is an internal error (exit 1, "please
report"), never blamed on the user; -v shows the traceback."""
from __future__ import annotations

import pytest

from practise import cli
from practise.cli.errors import flag_message
from practise.errors import NonFiniteError, PractiseError, UnreachableTarget, UntrustedFile, UsageError


def run_cli(monkeypatch, capsys, exc, *flags):
    parser_func = cli.build_parser

    def build():
        parser = parser_func()
        for action in parser._subparsers._group_actions:
            for sub in action.choices.values():
                sub.set_defaults(func=lambda a: (_ for _ in ()).throw(exc))
        return parser

    monkeypatch.setattr(cli, "build_parser", build)
    code = cli.main([*flags, "blocks", "--list"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("exc", [UsageError("bad `image_size` 0; give 1 to 4096"), UntrustedFile("x.json", "no"),
                                 UnreachableTarget("95% is not reachable"), NonFiniteError("NaN weights"),
                                 FileNotFoundError("no such file: a.png")])
def test_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, exc):
    code, err = run_cli(monkeypatch, capsys, exc)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("practise blocks: error: ")
    assert "internal" not in err


def test_parameters_in_messages_become_flags(monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, UsageError("check `image_size` and `recovery.lr`, not `nothing_known`"))
    assert code == 2
    assert "check --image-size and --recovery-lr, not `nothing_known`" in err


@pytest.mark.parametrize("exc", [ValueError("a torch shape error"), KeyError("x"), RuntimeError("boom")])
def test_anything_else_is_an_internal_error_exit_1(monkeypatch, capsys, exc):
    code, err = run_cli(monkeypatch, capsys, exc)
    assert code == 1
    assert err.count("\n") == 1 and "internal error" in err and "please report" in err


def test_verbose_re_raises_internal_errors(monkeypatch, capsys):
    with pytest.raises(RuntimeError, match="boom"):
        run_cli(monkeypatch, capsys, RuntimeError("boom"), "-v")


def test_every_practise_error_is_still_a_value_error_for_python_callers():
    for kind in (UsageError, UntrustedFile, UnreachableTarget, NonFiniteError):
        assert issubclass(kind, PractiseError) and issubclass(kind, ValueError)


def test_flag_message_is_one_line():
    assert flag_message(UsageError("line one\n  pass `overwrite`")) == "line one pass --overwrite"


def test_library_messages_name_parameters_not_flags():
    """Only practise/cli knows the flags: a library message naming one misleads a Python user."""
    import ast
    import pathlib
    import re

    import practise

    flag = re.compile(r"(^|[\s(])--[a-z][a-z-]+")
    root = pathlib.Path(practise.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "cli" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for const in ast.walk(node.exc):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str) and flag.search(const.value):
                        offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders
