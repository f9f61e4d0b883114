"""The report's figures: factor effects and speed, training loss curves (with the data-filter summary
read from the same run files), and relevancy maps."""
