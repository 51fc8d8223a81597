"""Google in one place: `access` builds credentials and API clients, `oauth` runs `auth google`.

The calendar source (`daemon/sources/google.py`) and the Gmail transport (`daemon/mail/gmail.py`) use them.
"""
