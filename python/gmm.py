"""GMM variational inference (paper 4.2): ``python python/gmm.py [--quick] [--help]``.

Launcher: Python puts this folder on ``sys.path`` when it runs a script, so the package
``redge_apps`` beside it imports; the experiment is ``redge_apps/gmm.py``.
"""

from redge_apps.gmm import main

if __name__ == "__main__":
    main()
