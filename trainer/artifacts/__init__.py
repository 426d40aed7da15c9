"""What a run leaves for people and other tools: pictures, terminal tables, exported anchors, weights.

plots      anchors over the box distribution, loss curves (numpy and matplotlib, no torch)
terminal   anchor and fit tables, progress lines and bars for the terminal (rich, no torch)
exports    the learned anchors as JSON, YAML and darknet cfg lines; the final weights (torch)
"""
