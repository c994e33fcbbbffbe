"""Classical baselines, score tables with intervals, animations, and the studies that judge a result."""
