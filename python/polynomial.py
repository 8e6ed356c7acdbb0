"""Polynomial programming (paper 4.1, and the linear extension of App. D.3): ``python python/polynomial.py [--quick] [--help]``.

Launcher: Python puts this folder on ``sys.path`` when it runs a script, so the package
``redge_apps`` beside it imports; the experiment is ``redge_apps/polynomial.py``.
"""

from redge_apps.polynomial import main

if __name__ == "__main__":
    main()
