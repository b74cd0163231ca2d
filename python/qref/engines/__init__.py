"""qref engines: one subpackage per runtime whose arithmetic qref reproduces."""
