"""Real-browser smoke test (issue 18 §2): the course as a student opens it, in JupyterLab.

Starts JupyterLab on a free local port with a random token, serving a temporary copy of
``notebooks/`` (outputs stripped, so every output checked comes from this run), opens each
notebook in headless Chromium (Debian's ``chromium`` driven by Playwright's Python package; its
own browser download is not needed), runs Run > Run All Cells and asserts:

* every visible code cell ran (an execution count, no ``[*]`` left): an exception stops Run All;
* no error output: no output contains ``Traceback`` and no stderr output has an
  ``...Error:``/``...Exception:`` line;
* the hidden solution cells (metadata ``{"jupyter": {"source_hidden": true}}``) are shown
  collapsed: an input placeholder and no code editor, while ordinary code cells show their code;
* a tqdm progress widget from :func:`lmcourse.training.fit` rendered while the cell ran (seen by
  a ``MutationObserver``, since bars use ``leave=False`` and vanish when done): always in a small
  probe notebook written next to the copies, and in a chapter whenever it calls ``training.fit``
  without ``progress=False``;
* the kernel ends idle (server REST API and the notebook's status indicator).

Screenshots go to ``build/browser/<notebook>.png`` (and ``<notebook>.progress.png`` while a bar
is live). Needs ``chromium`` (``apt-get install chromium``) and ``pip install -r
requirements-browser.txt``; set ``LMCOURSE_CHROMIUM`` to use another Chromium binary and
``LMCOURSE_BROWSER_TIMEOUT`` (seconds per notebook, default 900) on a slow machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SHOTS = ROOT / "build" / "browser"
CHAPTERS = ("00_setup", "10_metrics")   # the setup chapter and the shortest one calling training.fit
PROBE = "zz_progress_probe"
CHROMIUM_ENV = "LMCOURSE_CHROMIUM"
TIMEOUT_ENV = "LMCOURSE_BROWSER_TIMEOUT"
START_TIMEOUT_S = 180.0


def _find_chromium() -> str | None:
    """Path of the Chromium executable: ``$LMCOURSE_CHROMIUM``, else ``chromium`` on the PATH."""
    explicit = os.environ.get(CHROMIUM_ENV, "").strip()
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright is not installed: `pip install -r requirements-browser.txt` "
           "(do not run `playwright install`; the test uses Debian's chromium)")
pytest.importorskip("jupyterlab", reason="JupyterLab is not installed: `pip install -r requirements.txt`")
CHROMIUM = _find_chromium()
if CHROMIUM is None:
    pytest.skip(f"no Chromium found: `apt-get install chromium`, or set {CHROMIUM_ENV} to the "
                "path of a Chromium executable", allow_module_level=True)

# Counts every progress bar element added under an output area, and samples the text of the
# live bars (tqdm writes "40%|####  | 4/10 [00:01<00:02, ...]" next to the bar) every 200 ms.
OBSERVER_JS = """
(() => {
  const SEL = '.jp-OutputArea .widget-hprogress, .jp-OutputArea .widget-progress, .jp-OutputArea progress';
  const state = {count: 0, texts: []};
  window.__lmProgress = state;
  const seen = new WeakSet();
  const look = (node) => {
    if (!(node instanceof Element)) return;
    const found = node.matches(SEL) ? [node] : Array.from(node.querySelectorAll(SEL));
    for (const el of found) { if (!seen.has(el)) { seen.add(el); state.count += 1; } }
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) look(n);
  }).observe(document, {childList: true, subtree: true});
  setInterval(() => {
    for (const el of document.querySelectorAll(SEL)) {
      const box = el.closest('.widget-hbox') || el.parentElement;
      const text = (box ? box.textContent : '').replace(/\\s+/g, ' ').trim();
      if (text && !state.texts.includes(text)) { state.texts.push(text); if (state.texts.length > 8) state.texts.shift(); }
    }
  }, 200);
})();
"""

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"   # the notebook tab on show
# One entry per notebook cell (in order): its type, input prompt text, whether its input is
# collapsed (placeholder shown, no editor), and each output's MIME type and text.
CELLS_JS = """
() => Array.from(document.querySelectorAll('%s .jp-Notebook .jp-Cell')).map(cell => ({
  code: cell.classList.contains('jp-CodeCell'),
  prompt: (cell.querySelector('.jp-InputArea .jp-InputPrompt') || {textContent: null}).textContent,
  placeholder: cell.querySelector('.jp-InputPlaceholder') !== null,
  editor: cell.querySelector('.jp-InputArea .jp-InputArea-editor') !== null,
  outputs: Array.from(cell.querySelectorAll('.jp-OutputArea-output')).map(o => ({
    mime: o.getAttribute('data-mime-type') || '', text: o.textContent || ''})),
}))
"""

CELLS_JS = CELLS_JS.replace("%s", PANEL)
_ERROR_LINE = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception)\b.*:", re.MULTILINE)


@dataclass
class Lab:
    """A running JupyterLab: base URL, token, served folder, process."""

    url: str
    token: str
    root: Path
    proc: subprocess.Popen

    def api(self, path: str, method: str = "GET") -> Any:
        """JSON answer of the Jupyter server REST API at ``path`` (e.g. ``/api/sessions``)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def kernel_state(self, notebook: str) -> str | None:
        """``execution_state`` of the kernel of ``notebook`` ("idle", "busy", ...); None if none."""
        for session in self.api("/api/sessions"):
            if session.get("path", "").endswith(f"{notebook}.ipynb") and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def shut_down_kernel(self, notebook: str) -> None:
        """End the session (and kernel) of ``notebook`` if there is one, to free its memory."""
        for session in self.api("/api/sessions"):
            if session.get("path", "").endswith(f"{notebook}.ipynb"):
                self.api(f"/api/sessions/{session['id']}", method="DELETE")


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (JupyterLab fails loudly if it is taken meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _strip_outputs(path: Path) -> None:
    """Remove outputs and execution counts of a notebook copy, keeping cells and metadata."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    path.write_text(json.dumps(nb, indent=1))


def _write_probe(path: Path) -> None:
    """A two-cell notebook training the course CNN for one short epoch with ``progress=True``."""
    sources = [
        "import numpy as np\nimport optax\nfrom flax import nnx\n\n"
        "from lmcourse import training\nfrom lmcourse.compat import make_optimizer\n"
        "from lmcourse.models.cnn import CNN",
        "rng = np.random.default_rng(0)\n"
        "x = rng.random((1536, 28, 28, 1), dtype=np.float32)   # (N, H, W, C) float32 in [0, 1]\n"
        "y = rng.integers(0, 10, size=1536).astype(np.int32)\n"
        "model = CNN(nnx.Rngs(0))\n"
        "history = training.fit(model, make_optimizer(model, optax.adam(1e-3)), x, y,\n"
        "                       epochs=2, batch_size=64, progress=True)\n"
        "print(f'{len(history.step_loss)} steps, last loss {history.step_loss[-1]:.3f}')",
    ]
    cells = [{"cell_type": "code", "id": f"probe{i}", "metadata": {}, "execution_count": None,
              "outputs": [], "source": src} for i, src in enumerate(sources)]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    path.write_text(json.dumps(nb, indent=1))


def _write_settings(settings: Path) -> None:
    """JupyterLab user settings: every cell in the DOM, default kernel started, no news fetch."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings":
            {"windowingMode": "none", "autoStartDefaultKernel": True},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, values in files.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))


def _fit_asks_for_progress(source: str) -> bool:
    """Whether some ``training.fit(...)`` call in ``source`` leaves its progress bar on."""
    for match in re.finditer(r"\bfit\(", source):
        depth, end = 1, match.end()
        while end < len(source) and depth:
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        call = source[match.start():end]
        if "training.fit(" in source[max(0, match.start() - 9):end] and \
                not re.search(r"progress\s*=\s*False", call):
            return True
    return False


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """JupyterLab serving a temporary copy of ``notebooks/`` plus the progress probe."""
    tmp = Path(tempfile.mkdtemp(prefix="lmcourse-browser-"))
    proc, log, server = None, None, None
    try:
        root = tmp / "notebooks"
        shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        for name in CHAPTERS:
            _strip_outputs(root / f"{name}.ipynb")
        _write_probe(root / f"{PROBE}.ipynb")
        _write_settings(tmp / "settings")
        port, token = _free_port(), secrets.token_urlsafe(24)
        env = {**os.environ, "LMCOURSE_SCALE": "quick", "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
        env.pop("LMCOURSE_RESULTS", None)   # record() must not write into a course run's results
        log_path = tmp / "jupyterlab.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             *(["--allow-root"] if os.geteuid() == 0 else [])],   # CI containers run as root
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Lab(f"http://127.0.0.1:{port}", token, root, proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                server.api("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT_S:.0f} s:\n"
                                f"{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield server
    finally:
        if proc is not None and proc.poll() is None:
            if server is not None:
                try:   # shut the kernels down first, so none outlives the server
                    for kernel in server.api("/api/kernels"):
                        server.api(f"/api/kernels/{kernel['id']}", method="DELETE")
                except (OSError, ValueError):
                    pass
            proc.terminate()   # our own JupyterLab, by its process id
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if log is not None:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system one) driven by Playwright."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


def _wait_kernel_idle(page: Any, lab: Lab, name: str, timeout: float) -> None:
    """Wait until the notebook's kernel is started and idle (accepting a kernel dialog if shown)."""
    deadline = time.monotonic() + timeout
    while lab.kernel_state(name) != "idle":
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count() and dialog.first.is_visible():
            dialog.first.click()
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: no idle kernel within {timeout:.0f} s (state {lab.kernel_state(name)})")
        time.sleep(0.5)


def _run_all(page: Any) -> None:
    """Run > Run All Cells, through the menu bar as a student would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def _wait_run_finished(page: Any, lab: Lab, name: str, expected: list[int], timeout: float) -> list[dict]:
    """Poll until every cell in ``expected`` has a number and the kernel stays idle; return cells.

    Stops early when the run stopped (no cell queued, kernel idle for 10 s) with cells left
    unnumbered: an exception aborts Run All. Takes ``<name>.progress.png`` while a bar is live.
    """
    deadline = time.monotonic() + timeout
    idle_since, progress_shot = None, False
    while True:
        cells = page.evaluate(CELLS_JS)
        prompts = [cells[i]["prompt"] or "" for i in expected]
        queued = any("*" in p for p in prompts)
        numbered = all(re.search(r"\[\d+\]", p) for p in prompts)
        idle = not queued and lab.kernel_state(name) == "idle"
        idle_since = (idle_since or time.monotonic()) if idle else None
        if numbered and idle and time.monotonic() - idle_since >= 2:
            return cells
        if idle_since is not None and time.monotonic() - idle_since >= 10:
            return cells
        if not progress_shot:   # once the bar has moved past 0 items
            bar = page.locator(".jp-OutputArea .widget-hbox", has=page.locator(".widget-hprogress"),
                               has_text=re.compile(r"\b[1-9]\d*/\d+"))
            try:
                if bar.count() and bar.first.is_visible():
                    bar.first.scroll_into_view_if_needed(timeout=2000)
                    page.screenshot(path=str(SHOTS / f"{name}.progress.png"))
                    progress_shot = True
            except sync_api.Error:
                pass   # the bar vanished meanwhile (leave=False); try again on the next one
        if time.monotonic() > deadline:
            page.screenshot(path=str(SHOTS / f"{name}.timeout.png"))
            pytest.fail(f"{name}: Run All did not finish within {timeout:.0f} s; prompts {prompts}")
        time.sleep(0.5)


@pytest.mark.parametrize("name", [*CHAPTERS, PROBE])
def test_notebook_runs_in_jupyterlab(lab: Lab, browser: Any, name: str) -> None:
    """Open ``name`` in JupyterLab, Run All Cells, check outputs, collapsed solutions, bar, idle kernel."""
    timeout = float(os.environ.get(TIMEOUT_ENV, "900"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    nb = json.loads((lab.root / f"{name}.ipynb").read_text())
    kinds = [c["cell_type"] for c in nb["cells"]]
    hidden = {i for i, c in enumerate(nb["cells"])
              if c["cell_type"] == "code" and c["metadata"].get("jupyter", {}).get("source_hidden")}
    runnable = [i for i, c in enumerate(nb["cells"])
                if c["cell_type"] == "code" and "".join(c["source"]).strip() and i not in hidden]
    wants_bar = name == PROBE or any(
        _fit_asks_for_progress("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code")

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(OBSERVER_JS)
    try:
        page = context.new_page()
        # ?reset: a fresh layout with only this notebook (not the tabs the previous test left open)
        page.goto(f"{lab.url}/lab/tree/{name}.ipynb?reset&token={lab.token}")
        page.locator(f"{PANEL} .jp-Notebook .jp-Cell").first.wait_for(timeout=START_TIMEOUT_S * 1000)
        _wait_kernel_idle(page, lab, name, START_TIMEOUT_S)
        shown = page.evaluate(CELLS_JS)
        assert [("code" if c["code"] else "other") for c in shown] == \
            [("code" if k == "code" else "other") for k in kinds], \
            f"{name}: JupyterLab shows {len(shown)} cells, the notebook has {len(kinds)}"

        _run_all(page)
        cells = _wait_run_finished(page, lab, name, runnable, timeout)
        page.screenshot(path=str(SHOTS / f"{name}.png"))

        not_run = [i for i in runnable if not re.search(r"\[\d+\]", cells[i]["prompt"] or "")]
        assert not not_run, f"{name}: Run All stopped; cells {not_run} did not run (prompts " \
                            f"{[cells[i]['prompt'] for i in not_run[:3]]})"
        for i, cell in enumerate(cells):
            for out in cell["outputs"]:
                assert "Traceback" not in out["text"], f"{name}: cell {i} shows a traceback:\n{out['text'][-1500:]}"
                if out["mime"] == "application/vnd.jupyter.stderr":
                    assert not _ERROR_LINE.search(out["text"]), \
                        f"{name}: cell {i} wrote an error to stderr:\n{out['text'][-1500:]}"
        for i in hidden:
            assert cells[i]["placeholder"] and not cells[i]["editor"], \
                f"{name}: hidden solution cell {i} is shown expanded (source_hidden is not honoured)"
        for i in runnable:
            assert cells[i]["editor"] and not cells[i]["placeholder"], f"{name}: code cell {i} is collapsed"

        progress = page.evaluate("window.__lmProgress")
        if wants_bar:
            assert progress["count"] >= 1, f"{name}: training.fit ran with progress on but no progress " \
                                           "widget rendered (ipywidgets front end missing?)"
            assert any(re.search(r"\d+/\d+", t) for t in progress["texts"]), \
                f"{name}: the progress widget never showed 'done/total' text: {progress['texts']}"
        print(f"{name}: {len(runnable)} code cells ran, {len(hidden)} collapsed solutions, "
              f"{progress['count']} progress widget(s), last bar texts {progress['texts'][-2:]}")

        assert lab.kernel_state(name) == "idle", f"{name}: the kernel did not end idle"
        status_bar = page.locator("#jp-main-statusbar").inner_text()
        assert re.search(r"\|\s*Idle\b", status_bar), f"{name}: the status bar does not show an idle " \
                                                       f"kernel: {status_bar!r}"
    finally:
        context.close()
        try:
            lab.shut_down_kernel(name)
        except OSError:
            pass   # the server is gone; the fixture's teardown reports nothing more useful
