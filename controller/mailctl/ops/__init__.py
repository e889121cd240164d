"""The operations layer: every action the CLI and the admin API offer, as plain
functions with typed inputs and results (ops.models). Both callers use these, so
the two cannot drift: accounts (users, aliases, domains, mailboxes), mailqueue
(the queue, table lookups) and config (a dry run of settings).
"""
