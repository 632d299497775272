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
        json.dump([{"name": i.name, "target": i.target,
                    "status": "missing" if i.cls is not None and i.cls.missing() else i.status,
                    "missing": [{"scheme": k, "package": v[1], "install": v[2]}
                                for k, v in (i.cls.needs.items() if i.cls else []) if i.cls and i.cls.missing(k)],
                    "detail": i.detail,
                    "family": i.cls.family if i.cls else None,
                    "schemes": list(i.cls.schemes) if i.cls else [],
                    "support": i.cls.support if i.cls else None} for i in infos], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    name_w = max([len(i.name) for i in infos] + [6])
    print(f"{'DRIVER':<{name_w}}  {'STATUS':<11}  {'SCHEMES':<24}  DESCRIPTION")
    ok = True
    for i in infos:
        schemes = ", ".join(i.cls.schemes) if i.cls else ""
        status, detail = i.status, i.detail
        if i.cls is not None:
            missing = i.cls.missing()
            if missing is not None:
                status, detail = "missing", f"{detail}; missing: {missing.package} ({missing.install})"
            for scheme, (_module, package, _how) in i.cls.needs.items():
                if scheme != "*" and i.cls.missing(scheme) is not None:
                    detail += f"; {scheme}: URLs need {package}"
        ok = ok and status == "enabled"
        print(f"{i.name:<{name_w}}  {status:<11}  {schemes:<24}  {detail}")
    return 0 if ok else 1
