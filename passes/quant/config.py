"""Per-tensor calibration settings for quantize: ``quantize{config=FILE}``.

FILE is JSON:

    {"tensors": [
        {"match": "features\\\\.0", "method": "kl"},
        {"match": "Relu_output", "method": "global", "threshold": 6.0},
        {"match": ".*", "method": "percentile", "percentile": 99.9}
    ]}

Each activation tensor takes the first rule whose ``match`` (a regular expression, searched
in the tensor's name) matches; tensors no rule matches use the pass's own ``method`` /
``percentile`` / ``threshold`` options. A rule's missing fields come from those options too.
Mistakes are errors naming the file: unreadable JSON, an unknown key or method, a bad regular
expression, and (after the pass ran) a rule that matched no quantized tensor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from optc.errors import OptcError
from optc.passes.quant.observers import METHODS

_KEYS = {"match", "method", "percentile", "threshold"}


@dataclass
class Rule:
    pattern: re.Pattern
    method: str | None
    percentile: float | None
    threshold: float | None
    used: bool = False


def load_rules(path: str) -> list[Rule]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise OptcError(f"{path}: quantize config file not found") from None
    except (OSError, ValueError) as e:
        raise OptcError(f"{path}: not a readable JSON quantize config ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list) or \
            set(doc) != {"tensors"}:
        raise OptcError(f'{path}: a quantize config is {{"tensors": [rules]}}')
    rules = []
    for i, r in enumerate(doc["tensors"]):
        where = f"{path}: rule {i + 1}"
        if not isinstance(r, dict) or "match" not in r:
            raise OptcError(f"{where}: a rule is an object with a 'match' regular expression")
        unknown = set(r) - _KEYS
        if unknown:
            raise OptcError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: "
                            f"{', '.join(sorted(_KEYS))})")
        if "method" in r and r["method"] not in METHODS:
            raise OptcError(f"{where}: unknown method '{r['method']}' (one of "
                            f"{', '.join(METHODS)})")
        try:
            pattern = re.compile(r["match"])
        except (re.error, TypeError) as e:
            raise OptcError(f"{where}: bad regular expression {r['match']!r} ({e})") from None
        rules.append(Rule(pattern, r.get("method"), r.get("percentile"), r.get("threshold")))
    return rules


def rule_for(rules: list[Rule], name: str) -> Rule | None:
    for r in rules:
        if r.pattern.search(name):
            r.used = True
            return r
    return None


def check_all_used(rules: list[Rule], path: str) -> None:
    unused = [r.pattern.pattern for r in rules if not r.used]
    if unused:
        raise OptcError(f"{path}: rule(s) matching no quantized tensor: "
                        f"{', '.join(repr(u) for u in unused)}")
