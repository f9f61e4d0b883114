"""The study's definition: the typed config, the recipe and its factors, the design, the run order
and the study stamp. Stage packages import it; it imports none of them at module level."""
