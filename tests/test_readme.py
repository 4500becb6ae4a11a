"""The README stays true: it names every config key, every command and the two set-up commands."""

from pathlib import Path

from tunelab import cli, config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_config_key():
    missing = [k.split()[0] for k, _, _ in config.describe() if f"`{k.split()[0]}`" not in README]
    assert not missing, f"README lacks config keys: {missing} (regenerate with `tunelab config --markdown`)"


def test_readme_lists_every_command_and_the_two_entry_points():
    for name in cli.COMMANDS:
        assert f"tunelab {name}" in README, name
    assert "make demo" in README and "make test" in README


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
