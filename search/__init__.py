"""The search: mutations, screening and the equivalence cache, regularized evolution with funnel
selection, the run store (SQLite, or in memory) behind one interface, and the random-search baseline. Simplification is
`optsearch.search.simplify.simplify` (not re-exported: the name is also its module's)."""
from optsearch.search.equivalence import EquivalenceCache, Screen, fingerprint, matches, screen
from optsearch.search.evolution import Evolution, Outcome
from optsearch.search.memory_store import MemoryStore
from optsearch.search.population import Population
from optsearch.search.records import Counters, ProgramRow, SearchState, SearchStore
from optsearch.search.mutate import MUTATIONS, mutate, to_ssa
from optsearch.search.random_search import random_program, random_search
from optsearch.search.settings import (
    DEFAULT_MUTATION_WEIGHTS, EvaluationSettings, FunnelSettings, SearchSettings, Target,
)
from optsearch.search.store import RunStore

__all__ = [
    "Counters", "DEFAULT_MUTATION_WEIGHTS", "EquivalenceCache", "EvaluationSettings", "Evolution", "FunnelSettings",
    "MUTATIONS", "MemoryStore", "Outcome", "Population", "ProgramRow", "RunStore", "SearchState", "SearchStore", "Screen", "SearchSettings", "Target", "fingerprint",
    "matches", "mutate", "random_program", "random_search", "screen", "to_ssa",
]
