"""Reading the Terraform in ``infra/`` for the tests: the parsed files (python-hcl2), the root
variables' defaults, the env-var names the code reads (found in the code itself), and the
functions' environment as Terraform computes it (``terraform console`` on the provider-free
module ``infra/modules/function_env``, offline)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2

from support.paths import ROOT

INFRA = ROOT / "infra"
ENV_MODULE = INFRA / "modules" / "function_env"
CODE_DIRS = (ROOT / "shared" / "dbbackup", ROOT / "functions")
_ENV_NAMES = {"env", "environ", "environment"}
_VAR = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")


def tf_files() -> list[Path]:
    return sorted(INFRA.rglob("*.tf"))


@cache
def parsed(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f)


def unq(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted ('"1800s"'); expressions stay ${...}."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):  # a list default: its string items are quoted too
        return [unq(item) for item in value]
    return value


def blocks(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """Top-level blocks of one kind (resource, variable, locals, module...) across infra/."""
    found = []
    for path in tf_files():
        for block in parsed(path).get(kind, []):
            found.append((path, block))
    return found


def resources(rtype: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for _, block in blocks("resource"):
        for key, named in block.items():
            if unq(key) == rtype:
                out |= {unq(name): body for name, body in named.items()}
    return out


def locals_(path: Path | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p, block in blocks("locals"):
        if path is None or p == path:
            out |= {k: v for k, v in block.items() if not k.startswith("__")}
    return out


def variable_defaults() -> dict[str, Any]:
    out = {}
    for path, block in blocks("variable"):
        if path.parent != INFRA:
            continue
        for name, body in block.items():
            if "default" in body:
                out[unq(name)] = unq(body["default"])
    return out


def _is_env(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _ENV_NAMES
    return isinstance(node, ast.Attribute) and node.attr in _ENV_NAMES


def _const(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _VAR.match(node.value):
        return node.value
    return None


def variables_read_by_code() -> set[str]:
    """Every environment variable our code reads, found in the code: ``env.get("X")``,
    ``os.environ["X"]``, ``os.getenv("X")``, a helper called with the environment and a name
    (``_int(env, "X", ...)``), and ``X_SECRET`` for each of ``secret_manager.SECRET_VARIABLES``."""
    found: set[str] = set()
    for folder in CODE_DIRS:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    func = node.func
                    named_get = isinstance(func, ast.Attribute) and (
                        (func.attr == "get" and _is_env(func.value)) or func.attr == "getenv"
                    )
                    if named_get and node.args:
                        name = _const(node.args[0])
                    elif any(_is_env(a) for a in node.args):
                        name = next((c for a in node.args if (c := _const(a))), None)
                    else:
                        name = None
                    if name:
                        found.add(name)
                elif (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.ctx, ast.Load)
                    and _is_env(node.value)
                    and (name := _const(node.slice))
                ):
                    found.add(name)
    from dbbackup.secret_manager import SECRET_VARIABLES

    return found | {f"{name}_SECRET" for name in SECRET_VARIABLES}


def variables_set_by_terraform() -> set[str]:
    """Every environment variable name the Terraform can set: the UPPER_CASE keys of the maps
    in infra/ (settings, console settings, the module's own), and X_SECRET for each key of the
    secret map (secrets.tf)."""
    names: set[str] = set()
    for path in tf_files():
        text = re.sub(r"#.*", "", path.read_text())  # comments name variables too
        keys = set(re.findall(r"(?:^|[{,])\s*([A-Z][A-Z0-9_]{2,})\s*=(?!=)", text, re.MULTILINE))
        names |= {f"{k}_SECRET" for k in keys} if path.name == "secrets.tf" else keys
    return names


def terraform() -> str | None:
    return shutil.which("terraform")


def evaluate_env_module(inputs: dict[str, Any], work: Path) -> dict[str, Any]:
    """The module's outputs (env, urls, service_names, functions) for these inputs, computed by
    Terraform itself, offline (the module has no provider)."""
    tf = terraform()
    assert tf, "terraform is not on PATH"
    module = work / "function_env"
    shutil.copytree(ENV_MODULE, module, dirs_exist_ok=True)
    (module / "test.tfvars.json").write_text(json.dumps(inputs))
    expr = (
        "jsonencode({env = local.env, urls = local.urls,"
        " service_names = local.service_names, functions = local.functions})"
    )
    out = subprocess.run(
        [tf, "console", "-var-file=test.tfvars.json"],
        input=expr,
        cwd=module,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "HOME": str(work)},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(json.loads(out.stdout))


def module_inputs(overrides: dict[str, Any], computed: dict[str, Any]) -> dict[str, Any]:
    """What the root module passes to function_env (main.tf), evaluated for a deployment with
    the root variables' defaults + ``overrides``: each argument there is ``var.X``, ``local.X``
    (a map of var.X in functions.tf/secrets.tf) or a value of a created resource, which
    ``computed`` supplies (the scheduler account's e-mail, the project number)."""
    values = variable_defaults() | overrides
    call = next(body for _, block in blocks("module") for name, body in block.items() if unq(name) == "function_env")
    local_maps = {
        "settings": locals_(INFRA / "functions.tf")["settings"],
        "console_settings": locals_(INFRA / "functions.tf")["console_settings"],
    }
    inputs: dict[str, Any] = {}
    for arg, expr in call.items():
        if arg in ("source",) or arg.startswith("__"):
            continue
        expr = unq(expr)
        if m := re.fullmatch(r"\$\{var\.(\w+)\}", expr):
            inputs[arg] = values[m.group(1)]
        elif expr == "${local.secret_ids}":
            inputs[arg] = secret_ids(values)
        elif m := re.fullmatch(r"\$\{local\.(\w+)\}", expr):
            inputs[arg] = {k: _eval_simple(unq(v), values) for k, v in local_maps[m.group(1)].items()}
        else:
            assert arg in computed, f"module argument {arg} = {expr}: give its value in `computed`"
            inputs[arg] = computed[arg]
    return inputs


def secret_ids(values: dict[str, Any]) -> dict[str, str]:
    """secrets.tf's local.secret_ids: variable => secret id, the empty ones left out."""
    text = (INFRA / "secrets.tf").read_text()
    pairs = re.findall(r"^\s*([A-Z][A-Z0-9_]{2,})\s*=\s*var\.(\w+)", text, re.MULTILINE)
    return {name: values[var] for name, var in pairs if values[var] != ""}


def _eval_simple(expr: Any, values: dict[str, Any]) -> str:
    """The few forms functions.tf's settings use: var.X, tostring(var.X), join(",", var.X),
    local.job_names["K"]."""
    if m := re.fullmatch(r"\$\{var\.(\w+)\}", str(expr)):
        return str(values[m.group(1)])
    if m := re.fullmatch(r"\$\{tostring\(var\.(\w+)\)\}", str(expr)):
        return str(values[m.group(1)])
    if m := re.fullmatch(r'\$\{join\("(.*)", var\.(\w+)\)\}', str(expr).replace('\\"', '"')):
        return m.group(1).join(values[m.group(2)])
    if m := re.fullmatch(r'\$\{local\.job_names\["(\w+)"\]\}', str(expr)):
        # scheduler.tf's job_names, a for expression over the jobs: its template, for this key.
        template = re.search(r'=> "(.*)"\s*\}+$', unq(locals_(INFRA / "scheduler.tf")["job_names"]))
        assert template, 'scheduler.tf job_names is not { for key in ... : key => "..." }'
        text = template.group(1).replace("${key}", m.group(1))
        return re.sub(r"\$\{var\.(\w+)\}", lambda v: str(values[v.group(1)]), text)
    raise AssertionError(f"unsupported settings expression {expr!r}: extend tests/support/infra.py")


def _has_library(soname: str) -> bool:
    listed = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    return f"{soname} " in listed


@cache
def built_source(server: bool) -> Path:
    """What ``make package`` builds, once per test run: build/function-source (``server``
    False) or build/verify-source (True), in a temporary directory left for the OS to clear."""
    import sys
    import tempfile

    sys.path.insert(0, str(INFRA))
    import package

    if server and not _has_library("libossp-uuid.so.16") and os.environ.get("DBBACKUP_REQUIRE_SERVER_PACKAGE") != "1":
        import pytest

        pytest.skip("Debian's libossp-uuid16 is not installed: verify_backup's server package cannot be built here")
    out = Path(tempfile.mkdtemp(prefix="dbbackup-package-")) / ("verify-source" if server else "function-source")
    built: Path = package.build(out, server=server)
    return built
