"""The README stays true: every config key of every section documented exactly once (in tables generated from
the schemas), every command, the two set-up commands, and the Python API as it is."""

import re
from pathlib import Path

from tunelab import cli, docs

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
FIX = "regenerate with `python -m tunelab.docs README.md`"


def test_every_config_section_has_exactly_one_generated_table_and_it_is_current():
    found = docs.blocks(README)
    assert sorted(found) == sorted(docs.sections()), f"sections without (or with unknown) README tables; {FIX}"
    for section, contents in found.items():
        assert len(contents) == 1, f"section {section} has {len(contents)} tables in the README"
        assert contents[0] == docs.markdown(section), f"README table of section {section} is stale; {FIX}"


def test_every_key_of_every_section_is_documented_exactly_once():
    table_rows = [line for line in README.splitlines() if line.startswith("| `")]
    for section, key, _, _ in docs.rows():
        rows = [r for r in table_rows if r.startswith(f"| {key} |")]
        assert len(rows) == 1, f"{key} ({section}) has {len(rows)} rows in the README's tables"
    assert {s for s, *_ in docs.rows()} >= {
        "run",
        "model",
        "data",
        "method",
        "train",
        "task",
        "task.causal_lm",
        "task.token_classification",
        "generation",
        "speed",
        "serve",
    }


def test_readme_lists_every_command_and_the_two_entry_points():
    for name in cli.COMMANDS:
        assert f"tunelab {name}" in README, name
    assert "make demo" in README and "make test" in README


def test_python_api_block_runs_as_documented(tiny_llama_dir, capsys):
    section = README[README.index("### Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "target.load(" in code
    code = code.replace('"runs/alpaca-lora"', repr(str(tiny_llama_dir))).replace(
        "GenerationConfig(max_new_tokens=16)", "GenerationConfig(max_new_tokens=3)"
    )
    code = code.replace("tgt.cfg, template", "tgt.cfg.model_copy(update={'max_new_tokens': 3}), template")
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)  # noqa: S102 - the README's own example
    from tunelab.generation import Output, target

    assert isinstance(scope["tgt"], target.Target)
    assert len(scope["outs"]) == 2 and all(isinstance(o, Output) for o in scope["outs"])
    assert scope["outs"][0].finish_reason in ("eos", "stop", "length")


def test_readme_lists_every_data_command_and_its_options():
    import argparse

    data = cli.build_parser()._subparsers._group_actions[0].choices["data"]
    subs = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) == {"audit", "clean", "augment", "scrub", "split"}
    for name, parser in subs.items():
        assert f"tunelab data {name}" in README, name
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in README, f"tunelab data {name} {flag}"
