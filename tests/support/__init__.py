"""What the tests share: scenarios, rigs, and servers made to misbehave.

Imported as `tests.support.<module>` (pytest runs from the root). The plain loopback servers
(moto, sshd, keys) that the benchmark uses too are in `loopback/`, outside the test tree.
"""
