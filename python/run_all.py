"""Every experiment in turn: ``python python/run_all.py [--quick] [--help]``.

Launcher: Python puts this folder on ``sys.path`` when it runs a script, so the package
``redge_apps`` beside it imports; the experiment is ``redge_apps/run_all.py``.
"""

from redge_apps.run_all import main

if __name__ == "__main__":
    main()
