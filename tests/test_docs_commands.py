"""Every command in the README and the docs site (docs/**/*.md) goes through the real parser.

Each `fast-nst COMMAND ...` and other installed command (`fast-nst-...`, looked up in pyproject's
[project.scripts]), `python -m fast_nst COMMAND ...`, `python -m fast_nst.dataset ...` and checkout
alias (`python train.py ...`, `stylize.py`, `optimize.py`, `app.py`)
line is run in this process as the shell would run it, with `--cfg job` appended: the entry point's
own Hydra app parses the overrides (cli.hydra_main's check first), composes the config and prints
it, and nothing is trained, loaded or written. So an example fails here when it does not parse
(`data.root=~/photos`), names an unknown option (`inptu=`) or a missing config group choice
(`style=udine`, `experiment=nope`). On top of what Hydra checks:

- `ckpt=NAME` (stylize, quality, export, stylize-dataset) must name a shipped export (checkpoints/NAME.safetensors), a kind that ships
  pretrained weights (`ckpt=magenta`), or the export of a training command on the same page (its
  composed `export.name`, e.g. `starry_night_demo` after `experiment=cpu_demo`);
- a path into the checkout (assets/, benchmarks/, checkpoints/, conf/, docs/, tests/, tools/) must exist,
  except a checkpoints/ export that a training command on the same page writes;
- `style=` / `style_weights=` of a shipped export must be paintings it holds (read from its
  metadata); `styles=[...]` and `style_image=` names without a file suffix must be bundled
  paintings;
- `fast-nst quality time_to_quality.recipe=` is composed as the train.py command it is;
- `fast-nst --help` (no command) must list the commands;
- tools/ and benchmarks/ scripts must exist and every `--flag` must appear in the script; `pip install ".[extra]"` extras must be in pyproject;
- ```python blocks must compile and every `from fast_nst... import name` must resolve (read from
  the module's source, nothing imported).

Conventions for writing commands in the docs (what this test understands):

- Commands live in fenced blocks marked bash, sh, shell or console; a `python X.py ...` or
  `fast-nst...` inline code span in prose is checked too. A block marked `text` is not checked.
- Placeholders are CAPITALS or example names: PHOTO, PHOTOS, DIR, PAINTING, NAME, photo.jpg,
  my_painting.jpg, clip.mp4. They are values, which Hydra composes without opening them. Never
  write <angle brackets> in a command: the shell reads them as redirections.
- `...` as a whole word stands for "more options" and is dropped.
- Shell expansion is bash's: `$HOME` and `${HOME}` become /home/user, any other `$VAR` its own name
  (`data.root=$COCO_DIR/train2014` -> `data.root=COCO_DIR/train2014`); `~` is expanded only at the
  start of a word, never after `key=`, where bash leaves it and Hydra refuses it (write
  `data.root=$HOME/photos`). Backslash-newline continues a line; `&&`, `||`, `;` and `|` separate
  commands; `#` starts a comment.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF, ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# Hydra apps of the checkout, by the script's path: aliases of fast-nst train / stylize / optimize / app
HYDRA_SCRIPTS = {"train.py": "train", "stylize.py": "stylize", "optimize.py": "optimize", "app.py": "app"}
DISPATCHERS = {"fast-nst", "fast_nst"}  # `fast-nst COMMAND` and `python -m fast_nst COMMAND`
# `python -m MODULE` apps besides `python -m fast_nst SUBCOMMAND`
MODULE_APPS = {"fast_nst.dataset": "stylize-dataset"}
CHECKOUT_DIRS = ("assets/", "benchmarks/", "checkpoints/", "conf/", "docs/", "tests/", "tools/")
IMAGE_SUFFIXES = re.compile(r"\.[A-Za-z0-9]{2,5}$")


@dataclass(frozen=True)
class Command:
    where: str           # README.md:12
    argv: tuple[str, ...]  # after shell expansion, `...` dropped

    @property
    def page(self) -> str:
        return self.where.rsplit(":", 1)[0]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


# ---------------------------------------------------------------------------------------------
# Reading the docs

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
INLINE = re.compile(r"(?<!`)`(?P<code>(?:python3? (?:-m fast_nst\b|[\w/.-]+\.py\b)|fast-nst(?:-[a-z]+)?(?=[ `]))[^`]*)`(?!`)")


def blocks(path: Path):
    """(language, first line number, text) of every fenced block, and ('inline', line, code) of
    inline command spans outside them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            indent, fence, lang = m["indent"], m["fence"], m["lang"].lower()
            body, start = [], i + 2
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
                i += 1
            yield lang, start, "\n".join(body)
        else:
            for s in INLINE.finditer(lines[i]):
                yield "inline", i + 1, s["code"]
        i += 1


def expand(word: str) -> str:
    """What bash makes of one word's variables and leading tilde (see the module docstring)."""
    if word.startswith("~/") or word == "~":
        word = "/home/user" + word[1:]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: "/home/user" if m[1] == "HOME" else m[1], word)


def split_commands(text: str, where_line: int):
    """Shell commands of a block: (line number, words) after continuation, comments and separators."""
    logical, start, buf = [], None, ""
    for n, line in enumerate(text.splitlines(), where_line):
        if start is None:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append((start, buf + line))
        start, buf = None, ""
    if buf:
        logical.append((start, buf))
    for n, line in logical:
        line = re.sub(r"^\s*\$ ", "", line)  # a console prompt
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        lex.commenters = "#"
        words: list[str] = []
        try:
            tokens = list(lex)
        except ValueError as e:  # unbalanced quotes
            raise AssertionError(f"line {n}: the shell cannot read {line!r}: {e}") from None
        for tok in tokens + [";"]:
            if tok and set(tok) <= set(";&|"):
                if words:
                    yield n, [expand(w) for w in words if w != "..."]
                words = []
            else:
                words.append(tok)


def commands() -> list[Command]:
    found = []
    for path in DOCS:
        rel = path.relative_to(ROOT).as_posix()
        for lang, line, text in blocks(path):
            if lang in SHELL_LANGS or lang == "inline":
                for n, argv in split_commands(text, line):
                    if lang == "inline" and is_bare_name(argv):
                        continue  # `fast-nst` named in prose, not run
                    if is_ours(argv):
                        found.append(Command(f"{rel}:{n}", tuple(argv)))
    return found


def python_blocks() -> list[tuple[str, str]]:
    return [(f"{p.relative_to(ROOT).as_posix()}:{line}", text)
            for p in DOCS for lang, line, text in blocks(p) if lang in ("python", "py")]


# ---------------------------------------------------------------------------------------------
# Which program a command runs

@lru_cache(maxsize=None)
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def console_scripts() -> dict[str, str]:
    return pyproject()["project"].get("scripts", {})


def program(argv: list[str]) -> tuple[str, str, list[str]] | None:
    """('script', path, args) | ('console', name, args) | ('module', 'fast_nst' or a
    fast_nst.X module, args) | ('pip', '', args) | None for a command of someone else's (git, mkdir, wandb ...)."""
    for i, w in enumerate(argv):
        if w in ("python", "python3") or w.endswith("/python"):
            rest = argv[i + 1:]
            if rest[:1] == ["-m"] and len(rest) > 1 and (rest[1] == "fast_nst" or rest[1].startswith("fast_nst.")):
                return "module", rest[1], rest[2:]   # run as python -m runs it (its __main__)
            if rest[:2] == ["-m", "pip"]:
                return "pip", "", rest[2:]
            if rest and rest[0].endswith(".py"):
                return "script", rest[0], rest[1:]
            return None
        if re.fullmatch(r"fast-nst(-[a-z]+)?", w):
            return "console", w, argv[i + 1:]
        if w.endswith(".py") and (ROOT / w).suffix == ".py" and i > 0:  # torchrun ... train.py, srun train.py
            return "script", w, argv[i + 1:]
        if w == "pip":
            return "pip", "", argv[i + 1:]
        if w == "bash" and i + 1 < len(argv) and argv[i + 1].startswith(("tools/", "benchmarks/")):
            return "script", argv[i + 1], argv[i + 2:]
    return None


def is_ours(argv: list[str]) -> bool:
    return program(argv) is not None


def is_bare_name(argv: list[str]) -> bool:
    """`fast-nst` or `python -m fast_nst` with no arguments: the command's name in a sentence."""
    found = program(argv)
    return found is not None and found[0] in ("console", "module") and found[1] in DISPATCHERS and not found[2]


# ---------------------------------------------------------------------------------------------
# Running an entry point's parser in this process

def run_entry(entry, argv0: str, args: list[str]) -> tuple[int, str, str]:
    """Runs `entry()` (a script path, or a callable that reads sys.argv) with sys.argv set, as the
    shell would; returns (exit code, stdout, stderr)."""
    old_argv = sys.argv
    sys.argv = [argv0, *args]
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if isinstance(entry, Path):
                runpy.run_path(str(entry), run_name="__main__")
            else:
                entry()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
    return code, out.getvalue(), err.getvalue()


def console_entry(name: str):
    target = console_scripts().get(name)
    if target is None:
        raise AssertionError(f"`{name}` is not an installed command: pyproject's [project.scripts] has "
                             f"{', '.join(sorted(console_scripts()))}")
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@lru_cache(maxsize=None)
def parse(cmd: Command) -> tuple[str, object]:
    """Runs cmd's parser; returns (what ran, the composed job config or None). Raises
    AssertionError naming the command when the parser refuses it."""
    kind, name, args = program(list(cmd.argv))
    hydra_args = [a for a in args if a not in ("--help", "-h")]
    if name in DISPATCHERS and not [a for a in args if not a.startswith("-")]:  # fast-nst --help
        entry = console_entry(name) if kind == "console" else (lambda: runpy.run_module(name, run_name="__main__"))
        code, out, err = run_entry(entry, name, args)
        assert code == 0 and "stylize" in out, f"{cmd}\n  exit {code}:\n{(out + err).strip()[-1500:]}"
        return f"{kind}:{name}", None
    if kind == "script" and name in HYDRA_SCRIPTS:
        code, out, err = run_entry(ROOT / name, str(ROOT / name), [*hydra_args, "--cfg", "job"])
    elif kind == "console":
        code, out, err = run_entry(console_entry(name), name, [*hydra_args, "--cfg", "job"])
    elif kind == "module":
        code, out, err = run_entry(lambda: runpy.run_module(name, run_name="__main__"), name,
                                   [*hydra_args, "--cfg", "job"])
    else:
        return kind, None
    assert code == 0, f"{cmd}\n  does not parse (exit {code}):\n{err.strip()[-1500:]}"
    cfg = OmegaConf.create(out) if out.strip() else None
    return f"{kind}:{name}", cfg


def config_of(cmd: Command) -> str | None:
    """Which app a Hydra command reaches: train, stylize, optimize, app, quality, export or
    stylize-dataset."""
    kind, name, args = program(list(cmd.argv))
    if kind == "script":
        return HYDRA_SCRIPTS.get(name)
    if kind == "module" and name != "fast_nst":
        return MODULE_APPS.get(name)
    sub = (args[0] if args else "") if kind == "module" else (name.removeprefix("fast-nst").lstrip("-") or (args[0] if args else ""))
    return sub or None


# ---------------------------------------------------------------------------------------------
# What the docs may name

def shipped_exports() -> set[str]:
    return {p.stem for p in (ROOT / "checkpoints").glob("*.safetensors")}


def bundled_paintings() -> set[str]:
    return {p.stem for p in (CONF / "style").glob("*.yaml")}


@lru_cache(maxsize=None)
def export_paintings(name: str) -> list[str]:
    """The paintings a shipped export holds, from its metadata (no tensor is read)."""
    import json

    from safetensors import safe_open

    with safe_open(str(ROOT / "checkpoints" / f"{name}.safetensors"), "pt") as f:
        return [s["name"] for s in json.loads(f.metadata()["fast_nst.styles"])]


@lru_cache(maxsize=None)
def pretrained_kinds() -> set[str]:
    from fast_nst.kinds import pretrained_kinds as kinds

    return set(kinds())


@lru_cache(maxsize=None)
def trained_on_page(page: str) -> set[str]:
    """export.name of every training command on `page` (README.md, docs/x.md), after composing it."""
    names = set()
    for cmd in COMMANDS:
        if cmd.page == page and config_of(cmd) == "train":
            with contextlib.suppress(AssertionError):  # its own test reports it
                _, cfg = parse(cmd)
                if cfg is not None:
                    names.add(str(OmegaConf.select(cfg, "export.name")))
    return names


def values(args: list[str]) -> dict[str, str]:
    return {a.split("=", 1)[0].lstrip("+~"): a.split("=", 1)[1] for a in args if "=" in a and not a.startswith("-")}


def names_in(value: str) -> list[str]:
    """The items of a Hydra list value `[a,b.jpg]`, or the one value."""
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        return [s.strip().strip("'\"") for s in v[1:-1].split(",") if s.strip()]
    return [v.strip("'\"")]


def check_paths(cmd: Command, args: list[str]) -> None:
    exports = shipped_exports() | trained_on_page(cmd.page)
    for word in args:
        value = word.split("=", 1)[1] if "=" in word else word
        for item in names_in(value):
            if not item.startswith(CHECKOUT_DIRS) or any(c in item for c in "*?"):
                continue
            p = ROOT / item
            if item.startswith("checkpoints/") and p.suffix == ".safetensors" and p.stem in exports:
                continue
            if item.startswith("checkpoints/") and p.suffix == ".onnx" and p.stem.removesuffix("_int8") in exports:
                continue  # written by python -m fast_nst export (or training's export)
            if item.startswith("checkpoints/runs/"):
                continue  # a training run's folder
            assert p.exists(), f"{cmd}\n  names {item}, which is not in the checkout"


def check_names(cmd: Command, app: str, args: list[str]) -> None:
    given = values(args)
    paintings = bundled_paintings()
    if app in ("stylize", "quality", "export", "stylize-dataset") and "ckpt" in given:
        ckpt = given["ckpt"]
        if "/" not in ckpt and not IMAGE_SUFFIXES.search(ckpt) and ckpt.isidentifier() and not ckpt.isupper():
            known = shipped_exports() | pretrained_kinds() | trained_on_page(cmd.page)
            assert ckpt in known, (f"{cmd}\n  ckpt={ckpt}: no checkpoints/{ckpt}.safetensors, no kind of that name "
                                   f"with pretrained weights, and no training command on this page exports it; "
                                   f"known: {', '.join(sorted(known))}")
    ckpt = given.get("ckpt", "")
    if app in ("stylize", "quality") and ckpt in shipped_exports():
        held = export_paintings(ckpt)
        asked = names_in(given["style"]) if "style" in given else []
        if given.get("style_weights", "").startswith("{"):
            asked += re.findall(r"([\w]+)\s*:", given["style_weights"])
        unknown = [a for a in asked if a not in (*held, "all", "null")]
        assert not unknown, f"{cmd}\n  {ckpt} holds {', '.join(held)}, not {', '.join(unknown)}"
    keys = {"stylize": ("style_image",), "quality": ("style_image",), "train": ("styles",),
            "optimize": ("style",)}.get(app, ())
    for key in keys:
        if key not in given or given[key].startswith("{"):
            continue
        for item in names_in(given[key]):
            if item and "/" not in item and not IMAGE_SUFFIXES.search(item) and item.isidentifier() \
                    and item not in ("all", "null") and not item.isupper():
                assert item in paintings, (f"{cmd}\n  {key}: {item} is not a bundled painting "
                                           f"({', '.join(sorted(paintings))}) nor an image file")


def check_script(cmd: Command, path: str, args: list[str]) -> None:
    script = ROOT / path
    assert script.is_file(), f"{cmd}\n  {path}: no such script"
    source = script.read_text()
    for a in args:
        if a.startswith("--") and len(a) > 2:
            flag = a.split("=", 1)[0]
            known = f'"{flag}"' in source or f"'{flag}'" in source
            assert known, f"{cmd}\n  {path} has no option {flag}"


def check_pip(cmd: Command, args: list[str]) -> None:
    extras = set(pyproject()["project"].get("optional-dependencies", {}))
    for a in args:
        m = re.fullmatch(r"\.?\[([\w,-]+)\]", a.removeprefix("-e").strip())
        if m:
            missing = set(m[1].split(",")) - extras
            assert not missing, f"{cmd}\n  pyproject has no extra {', '.join(sorted(missing))} (it has {', '.join(sorted(extras))})"


COMMANDS = commands()


def test_the_docs_hold_commands():
    """The reader of this file knows how much is checked; a fence or prefix change cannot make it zero."""
    apps = {config_of(c) for c in COMMANDS}
    want = {"train", "stylize", "optimize", "app", "quality", "export", "stylize-dataset"}
    assert len(COMMANDS) >= 80 and want <= apps, (len(COMMANDS), apps)


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.where for c in COMMANDS])
def test_command_parses(cmd: Command):
    kind, name, args = program(list(cmd.argv))
    if kind == "pip":
        check_pip(cmd, args)
        return
    if kind == "script" and name not in HYDRA_SCRIPTS:
        check_script(cmd, name, args)
        check_paths(cmd, args)
        return
    parse(cmd)
    app = config_of(cmd)
    hydra_args = [a for a in args if not a.startswith("-")]
    if kind != "script":
        hydra_args = [a for a in hydra_args if a != app]
    check_paths(cmd, hydra_args)
    check_names(cmd, app, hydra_args)
    recipe = values(hydra_args).get("time_to_quality.recipe")
    if recipe:  # fast-nst quality trains this recipe first: it is a train.py command line too
        parse(Command(cmd.where, ("python", "train.py", *shlex.split(recipe.strip("'\"")))))


def _module_names(module: str) -> set[str] | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            names |= {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    if spec.submodule_search_locations:  # a package: its submodules are importable names too
        names |= {p.stem for loc in spec.submodule_search_locations for p in Path(loc).iterdir()}
    return names


PYTHON_BLOCKS = python_blocks()


@pytest.mark.parametrize("where,code", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_python_block_names_exist(where: str, code: str):
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        pytest.fail(f"{where}: the Python block does not compile: {e}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fast_nst":
            names = _module_names(node.module)
            assert names is not None, f"{where}: no module {node.module}"
            missing = [a.name for a in node.names if a.name not in names]
            assert not missing, f"{where}: {node.module} has no {', '.join(missing)}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "fast_nst":
                    assert importlib.util.find_spec(a.name), f"{where}: no module {a.name}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("checkpoints/"):
            p = ROOT / node.value
            page = where.rsplit(":", 1)[0]
            assert p.exists() or p.stem in trained_on_page(page), f"{where}: names {node.value}, which is not shipped"
