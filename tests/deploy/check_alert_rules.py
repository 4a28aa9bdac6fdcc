#!/usr/bin/env python3
"""Checks container/prometheus-rules.yml: promtool's syntax check, the rule
unit tests in prometheus-rules.test.yml, and that every metric the rules use
is one the server exports (its name appears in the sources under src/).

Exit 77 (skipped) when promtool is not installed (Debian package prometheus)."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

SKIP = 77

source_root = pathlib.Path(os.environ.get("VOICEBRIDGE_SOURCE_ROOT", pathlib.Path(__file__).resolve().parents[2]))
rules = source_root / "container" / "prometheus-rules.yml"
rule_tests = source_root / "tests" / "deploy" / "prometheus-rules.test.yml"


def exported_metric_names():
    names = set()
    for path in (source_root / "src").rglob("*.cpp"):
        names.update(re.findall(r'"(voicebridge_[a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    return names


def metrics_used_by_rules():
    return set(re.findall(r"\bvoicebridge_[a-z0-9_]+", rules.read_text(encoding="utf-8")))


def is_exported(name, exported):
    if name in exported:
        return True
    # A histogram's _bucket/_sum/_count series are named at render time.
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return base != name and base in exported


def run(*args):
    result = subprocess.run(args, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode == 0


def main():
    failures = []
    exported = exported_metric_names()
    unknown = sorted(name for name in metrics_used_by_rules() if not is_exported(name, exported))
    if unknown:
        failures.append("metrics used by the alert rules but exported nowhere in src/: " + ", ".join(unknown))

    promtool = shutil.which("promtool")
    if not promtool:
        for failure in failures:
            print("FAIL:", failure, file=sys.stderr)
        if failures:
            return 1
        print("SKIP: promtool not installed (Debian package prometheus)")
        return SKIP
    if not run(promtool, "check", "rules", str(rules)):
        failures.append("promtool check rules failed")
    if not run(promtool, "test", "rules", str(rule_tests)):
        failures.append("promtool test rules failed")

    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
