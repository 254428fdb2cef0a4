"""The serving peers of bench/peer_serving.py: the same library call behind other servers."""
