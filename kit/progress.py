"""Progress bars: a widget in a Jupyter notebook that can draw one (tqdm.auto), tqdm's text bar everywhere else
(a terminal, a log, a notebook without ipywidgets, where tqdm.auto would only warn "IProgress not found")."""

import sys


def _bar_class():
    if "ipykernel" in sys.modules:  # inside a Jupyter kernel
        try:
            import ipywidgets  # noqa: F401 - what tqdm.auto's notebook bar is drawn with
            from tqdm.auto import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


tqdm = _bar_class()
