"""``posagent drivers``: the installed drivers and whether each loads."""

from __future__ import annotations

import argparse
import json
import sys

from posagent.core.registry import describe_drivers


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    infos = describe_drivers()
    if args.json:
        json.dump([{"name": i.name, "target": i.target, "status": i.status, "detail": i.detail,
                    "family": i.cls.family if i.cls else None,
                    "schemes": list(i.cls.schemes) if i.cls else [],
                    "support": i.cls.support if i.cls else None} for i in infos], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    name_w = max([len(i.name) for i in infos] + [6])
    for i in infos:
        schemes = ", ".join(i.cls.schemes) if i.cls else ""
        print(f"{i.name:<{name_w}}  {i.status:<11}  {schemes:<24}  {i.detail}")
    return 0 if all(i.status == "enabled" for i in infos) else 1
