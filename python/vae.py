"""Categorical VAE on binarized MNIST (paper 4.4): ``python python/vae.py [--quick] [--help]``.

Launcher: Python puts this folder on ``sys.path`` when it runs a script, so the package
``redge_apps`` beside it imports; the experiment is ``redge_apps/vae.py``.
"""

from redge_apps.vae import main

if __name__ == "__main__":
    main()
