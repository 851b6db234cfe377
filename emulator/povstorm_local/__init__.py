"""The local stack: the emulators, the functions, render workers and the
reconciler on one machine, wired as terraform wires the cloud.

    from povstorm_local.stack import LocalStack
    state = LocalStack(povstorm_home()).up()   # or .load() for a running one
    state.apply_env(); settings = state.settings()

``python -m povstorm_local.workers`` and ``python -m povstorm_local.reconciler`` are
processes the stack starts; ``povstorm_local.cli`` is ``povstorm local``. Nothing is
imported here, so those processes start without loading the stack's code.
"""
