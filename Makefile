# glintru — PGXS build of the extension, its command-line tools and unit tests.

EXTENSION = glintru
MODULE_big = glintru
DATA = $(wildcard sql/glintru--*.sql)

# src/core: the numeric core (never includes a PostgreSQL header);
# src/pg: the PostgreSQL glue, which calls the core (never the other way)
CORE_SRCS = $(sort $(wildcard src/core/*.c))
GLUE_SRCS = $(sort $(wildcard src/pg/*.c))
OBJS = $(CORE_SRCS:.c=.o) $(GLUE_SRCS:.c=.o)

# command-line tools, installed into PostgreSQL's bindir
SCRIPTS_built = build/glintru-train build/glintru-eval

REGRESS = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --load-extension=glintru
# concurrency cases as isolationtester specs (test/specs, expected/)
ISOLATION = same_user different_users model_swap attach_while_inserting stale_snapshot deferred
ISOLATION_OPTS = --inputdir=test --load-extension=glintru

# OpenBLAS, serial variant, pinned by path (see README: threads in backends hurt)
OPENBLAS_INC = /usr/include/x86_64-linux-gnu/openblas-serial
OPENBLAS_LIB = /usr/lib/x86_64-linux-gnu/openblas-serial
# server headers as system headers: -Wextra then judges our code, not theirs
PG_CPPFLAGS = -I$(OPENBLAS_INC) -Isrc/core -Isrc/pg -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CFLAGS = -std=gnu11 -Wall -Wextra $(GLINTRU_WERROR)
SHLIB_LINK = -L$(OPENBLAS_LIB) -Wl,-rpath,$(OPENBLAS_LIB) -lopenblas -lm

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# ---- numeric core outside the server: unit tests and tools ----
CORE_CC = $(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra $(GLINTRU_WERROR) -I$(OPENBLAS_INC) -Isrc/core
CORE_LIBS = -L$(OPENBLAS_LIB) -Wl,-rpath,$(OPENBLAS_LIB) -lopenblas -lm -lpthread

build/test_forward: test/unit/test_forward.c $(CORE_SRCS) $(wildcard src/core/*.h)
	@mkdir -p build
	$(CORE_CC) $< $(CORE_SRCS) -o $@ $(CORE_LIBS)

.PHONY: unitcheck
unitcheck: build/test_forward
	build/test_forward $(GOLDEN_DIRS)

EXTRA_CLEAN = build

# PGXS tracks no header dependencies: every object depends on every header
$(OBJS): $(wildcard src/core/*.h src/pg/*.h)

# the numeric core is plain C11 (declarations where first used, as in llm.c);
# PostgreSQL's C89-era -Wdeclaration-after-statement applies to the glue only
$(CORE_SRCS:.c=.o): CFLAGS += -Wno-declaration-after-statement

include tools/Makefile.train

# activations (GRU gates, ELU) are written as vector loops: let GCC vectorise
# them at -O2 (dynamic cost model; no FP-trap semantics needed, results unchanged)
src/core/kernels.o: CFLAGS += -fvect-cost-model=dynamic -fno-trapping-math
