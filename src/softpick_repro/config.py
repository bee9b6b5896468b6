"""Config loading and validation against the workflow's JSON schema.

Snakemake's own `validate()` reports jsonschema's raw message without the key's path; we
want one line that names the offending key (e.g. ``config error at train.lr: 'x' is not of
type 'number'``) before any job runs.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not satisfy the schema or a cross-key rule."""


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"config file {path} is empty (it must hold a mapping of config keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    return data


def deep_merge(base: dict, overlay: dict) -> dict:
    """Merge like Snakemake's --configfile: dicts merge recursively, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(paths: Iterable[str | Path]) -> dict:
    """Load and merge config files in order (first = the complete default), then validate."""
    merged: dict = {}
    for path in paths:
        merged = deep_merge(merged, load_yaml(path))
    validate_config(merged)
    return merged


def _key_path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = _key_path(error)
        prefix = "" if where == "<top level>" else where + "."
        names = ", ".join(prefix + u for u in unknown)
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown config key {names}{hint}"
    return f"config error at {_key_path(error)}: {error.message}"


def schema() -> dict:
    return load_yaml(SCHEMA_PATH)


def validate_config(config: dict, schema_path: str | Path | None = None) -> None:
    """Raise ConfigError with one line per problem (first the deepest, most specific)."""
    import jsonschema

    sch = load_yaml(schema_path) if schema_path else schema()
    validator = jsonschema.Draft202012Validator(sch)
    errors = sorted(validator.iter_errors(config), key=lambda e: (-len(e.absolute_path), str(e.message)))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors[:5]))
    _check_cross_keys(config)


def _check_cross_keys(config: dict) -> None:
    """Rules a JSON schema cannot express."""
    tok = config["tokenizer"]
    if tok["kind"] == "bpe" and tok["vocab_size"] < 3 + 256 + 1:
        raise ConfigError(
            f"config error at tokenizer.vocab_size: {tok['vocab_size']} is too small: a byte-level "
            f"BPE needs 3 special tokens + 256 byte symbols + at least one merge (>= 260)")
    synthetic = config["data"]["source"] == "synthetic"
    if synthetic != (tok["kind"] == "symbols"):
        raise ConfigError(
            f"config error at tokenizer.kind: data.source {config['data']['source']!r} with tokenizer.kind "
            f"{tok['kind']!r}; synthetic data needs kind symbols (one id per symbol) and kind symbols "
            f"needs data.source synthetic")
    if synthetic and "synthetic" not in config["data"]:
        raise ConfigError("config error at data: data.source synthetic needs a data.synthetic section")
    names = [size["name"] for size in config["sizes"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"config error at sizes: duplicate size names in {names}")
    runs = config["runs"]
    seen: dict[str, str] = {}
    for group in ("main_arms", "appendix_arms", "variant_arms"):
        for arm in runs[group]:
            if arm in seen:
                raise ConfigError(f"config error at runs.{group}: arm {arm!r} is already listed in runs.{seen[arm]}")
            seen[arm] = group


def main(argv: list[str] | None = None) -> int:
    """`python -m softpick_repro.config FILE...`: load, merge and validate config files as
    Snakemake would (first = the complete default), then run the plan check; one line
    naming the file, line or key on failure. Snakemake itself reports a broken --configfile
    overlay without its name, before any workflow code runs."""
    import sys

    paths = list(sys.argv[1:] if argv is None else argv) or ["config/config.yaml"]
    # the package's own module, not this __main__ copy, so the plan check's errors match
    from softpick_repro import config as package
    from softpick_repro.plancheck import check_plan

    try:
        check_plan(package.load_config(paths))
    except package.ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"ok: {' + '.join(paths)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
