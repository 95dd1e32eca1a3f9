"""Every --help line states its default once: a help text that names its default itself must keep
ArgumentDefaultsHelpFormatter from adding "(default: ...)" again (the ``%(default).0s`` of runners.cli)."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest

RUNNERS = ("expandnets", "interpolate", "merge", "relax", "reproduce", "sharpness", "train")


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [sub for choice in action.choices.values() for sub in _parsers(choice)]
    return found


@pytest.mark.parametrize("runner", RUNNERS)
def test_no_help_text_says_its_default_twice(runner):
    parser = importlib.import_module(f"runners.{runner}").build_parser()
    twice = {}
    for each in _parsers(parser):
        formatter = each._get_formatter()
        for action in each._actions:
            if action.help and action.help != argparse.SUPPRESS:
                text = formatter._expand_help(action)
                if len(re.findall(r"\bdefault\b", text, flags=re.IGNORECASE)) > 1:
                    twice[action.option_strings[0] if action.option_strings else action.dest] = text
    assert not twice
