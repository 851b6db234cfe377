"""The local stack: the emulators, the functions, a render task runner and
the reconciler on one machine, wired as terraform wires the cloud.

    from povstorm_local.stack import LocalStack
    state = LocalStack(povstorm_home()).up()   # or .load() for a running one
    settings = state.settings()                # explicit emulator endpoints

This package imports povstorm; povstorm never imports it. It plugs into the
client (``Cluster.local()``, ``povstorm local``) through the entry point in
``plugin.py``. ``python -m povstorm_local.tasks`` (running render tasks,
``povstorm.shells.render_task``, as Cloud Run Jobs runs them), ``python -m
povstorm_local.stitcher`` and ``python -m povstorm_local.reconciler`` are
processes the stack starts. Nothing is imported here, so those processes
start without loading the stack's code.
"""
