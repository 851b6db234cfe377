"""The ledger: the one Firestore adapter. ``ledger.py`` (Ledger: every
transaction and its ordering rules), ``docs.py`` (the typed documents and the
checked state moves), ``views.py`` (what it returns), ``transaction.py`` (the
bounded transaction). Import from the modules; this package re-exports
nothing, so a test that patches a setting patches the module that reads it."""
