"""Rebuild every paper figure: papermill over the ordered notebooks 01-06.

``reproduce(profile)`` runs ``notebooks/NN_*.ipynb`` in order with the parameters ``profile``,
``data``, ``run_dir`` and ``seed`` injected, keeps the executed copies in
``<run_dir>/notebooks/``, and stops at the first failure with the notebook and the cell named.
The notebooks write figures to ``figures/`` (``figNN_<what>.png`` and ``.pdf``) and pass state
to each other only through files (the GalaxySet and the run directory).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from . import paths
from .errors import AvaderError
from .runs import resolve_run_dir, write_json_atomic

__all__ = ["NOTEBOOKS", "list_notebooks", "reproduce", "notebook_parameters"]

log = logging.getLogger(__name__)

NOTEBOOKS = ("01_data", "02_pretraining", "03_vade_training", "04_clustering", "05_generation", "06_deblending")


def list_notebooks(only=None) -> list[Path]:
    """The notebooks to run, in order; ``only`` selects by number (``"04"``, ``4`` or a list)."""
    folder = paths.notebooks_dir()
    wanted = NOTEBOOKS
    if only:
        only = [only] if isinstance(only, (str, int)) else list(only)
        keys = {f"{int(str(k)[:2]):02d}" for k in only}
        wanted = [name for name in NOTEBOOKS if name[:2] in keys]
        if not wanted:
            raise AvaderError(f"--only {','.join(map(str, only))}: no such notebook (have {', '.join(n[:2] for n in NOTEBOOKS)})")
    found = []
    missing = []
    for name in wanted:
        path = folder / f"{name}.ipynb"
        (found if path.is_file() else missing).append(path)
    if missing:
        raise AvaderError(f"{missing[0]}: notebook missing from this checkout; the stages "
                          f"{', '.join(p.stem for p in missing)} cannot run")
    return found


def notebook_parameters(profile: str, data=None, run_dir=None, seed=None, overrides=None) -> dict:
    """The papermill parameters shared by every notebook."""
    params = {"profile": profile, "data": str(data) if data else "", "run_dir": str(run_dir) if run_dir else ""}
    if seed is not None:
        params["seed"] = int(seed)
    if overrides:
        params["overrides"] = list(overrides)
    return params


def reproduce(profile: str = "quick", data=None, only=None, run: str | None = None, seed: int | None = None,
              overrides=None, kernel_name: str | None = None, progress: bool = True, extra_parameters=None) -> dict:
    """Run the notebooks in order with papermill.

    Parameters
    ----------
    profile : str
        ``smoke``, ``quick``, ``paper``, ``published`` or a YAML file.
    data : path, optional
        GalaxySet to use instead of the profile's simulated default.
    only : str, int or list, optional
        Run only these notebooks (by number); earlier ones must have run once.
    run : str, optional
        Run name or folder (default: the profile name).
    seed : int, optional
        Overrides the profile's seed.
    overrides : list of str, optional
        ``section.key=value`` configuration overrides passed to every notebook.
    kernel_name : str, optional
        Jupyter kernel (default: the notebooks' own, ``python3``).
    progress : bool
        papermill's progress bar.
    extra_parameters : mapping, optional
        More papermill parameters (e.g. ``image_file`` for notebook 06).

    Returns
    -------
    dict
        Timings per notebook and the executed notebooks' paths.
    """
    import papermill as pm

    notebooks = list_notebooks(only)
    run_dir = resolve_run_dir(run or Path(str(profile)).stem)
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = notebook_parameters(profile, data, run_dir, seed, overrides)
    params.update(extra_parameters or {})
    env_backup = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    report = {"profile": profile, "run_dir": str(run_dir), "notebooks": {}}
    try:
        for nb in notebooks:
            target = out_dir / nb.name
            started = time.time()
            log.info("running %s", nb.name)
            try:
                pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name=kernel_name,
                                    progress_bar=progress, cwd=str(nb.parent), log_output=False)
            except pm.PapermillExecutionError as err:
                raise AvaderError(f"{nb.name}: cell {err.exec_count} failed: {err.ename}: "
                                  f"{str(err.evalue).splitlines()[0] if err.evalue else ''} "
                                  f"(executed copy: {target})") from None
            report["notebooks"][nb.stem] = {"seconds": round(time.time() - started, 1), "executed": str(target)}
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    write_json_atomic(run_dir / "reproduce.json", report)
    return report
