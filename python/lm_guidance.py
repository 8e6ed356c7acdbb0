"""Language-model reward guidance (MiniLM, K = 30522): ``python python/lm_guidance.py [--quick] [--help]``.

Launcher: Python puts this folder on ``sys.path`` when it runs a script, so the package
``redge_apps`` beside it imports; the experiment is ``redge_apps/lm_guidance.py``.
"""

from redge_apps.lm_guidance import main

if __name__ == "__main__":
    main()
