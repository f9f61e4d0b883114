"""Rehearsal of the paper study on loopback: tiny stand-ins of every source, served on 127.0.0.1."""
