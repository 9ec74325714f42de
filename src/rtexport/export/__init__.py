"""Export pipeline: gate → build → write (folder) or send (C-STORE)."""
