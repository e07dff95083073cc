# txoutbox: PGXS build.  `make && make install`, then see README.md for tests.
EXTENSION = txoutbox
MODULE_big = txoutbox
OBJS = \
	src/txoutbox.o \
	src/settings.o \
	src/shmem.o \
	src/wakeup.o \
	src/uuidv7.o \
	src/message.o \
	src/outbox.o \
	src/message_insert.o \
	src/fanout.o \
	src/trace_context.o \
	src/routes.o \
	src/route_state.o \
	src/route_health.o \
	src/low_water.o \
	src/dispatch.o \
	src/dispatch_session.o \
	src/dispatch_worker.o \
	src/launcher.o \
	src/ddl_watch.o \
	src/dispatcher.o \
	src/worker_status.o \
	src/publisher.o \
	src/publish_notify.o \
	src/publish_function.o \
	src/netpub.o \
	src/http_config.o \
	src/http_request.o \
	src/http_transport.o \
	src/publish_http.o \
	src/publish_nats.o \
	src/nats_transport.o \
	src/publish_amqp.o \
	src/amqp_transport.o \
	src/publish_redis.o
DATA = $(wildcard sql/txoutbox--*.sql)
PGFILEDESC = "txoutbox - transactional outbox with an in-database dispatcher"

PG_CPPFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
# export only what PostgreSQL looks up (src/exports.map says why)
SHLIB_LINK = -lcurl -Wl,--version-script=$(srcdir)/src/exports.map

# The broker publishers need their client libraries (Debian: libnats-dev,
# librabbitmq-dev, libhiredis-dev).  Each is built when its header is found;
# without it the publisher is left out and add_route says so (0A000).
has_header = $(shell printf '\043include <%s>\n' $(1) | $(CC) $(CPPFLAGS) -E - >/dev/null 2>&1 && echo yes)
ifeq ($(call has_header,nats/nats.h),yes)
PG_CPPFLAGS += -DTXOUTBOX_WITH_NATS
SHLIB_LINK += -lnats
endif
# rabbitmq-c 0.12 moved its headers to rabbitmq-c/ (the old <amqp.h> is
# left as a wrapper that warns): src/amqp.h includes the ones found here.
ifeq ($(call has_header,rabbitmq-c/amqp.h),yes)
PG_CPPFLAGS += -DTXOUTBOX_WITH_AMQP -DTXOUTBOX_AMQP_HEADERS_IN_DIR
SHLIB_LINK += -lrabbitmq
else ifeq ($(call has_header,amqp.h),yes)
PG_CPPFLAGS += -DTXOUTBOX_WITH_AMQP
SHLIB_LINK += -lrabbitmq
endif
ifeq ($(call has_header,hiredis/hiredis.h),yes)
PG_CPPFLAGS += -DTXOUTBOX_WITH_REDIS
SHLIB_LINK += -lhiredis
OBJS += src/redis_transport.o
endif

# pg_regress suites (sql/<name>.sql, expected/<name>.out), on a throwaway
# server that preloads txoutbox.
REGRESS = core_enqueue enqueue_insert core_claim core_marks core_read core_errors core_trigger routes dispatch \
	time_range ordering capture route_policy security notified_since \
	fanout idempotency expiry cloudevents trace_context
REGRESS_OPTS = --temp-config=test/txoutbox.conf --temp-instance=tmp_check_regress --encoding=UTF8 --no-locale

# isolation specs (test/specs/<name>.spec, test/expected/<name>.out)
ISOLATION = claim_disjoint claim_rollback enqueue_uncommitted lease_takeover ordered_claim \
	idempotency_concurrent fanout_states
ISOLATION_OPTS = --temp-config=test/txoutbox.conf --temp-instance=tmp_check_iso --encoding=UTF8 --no-locale --inputdir=test --outputdir=test/output_iso

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

# The upgrade pass: the same pg_regress suites and isolation specs once
# more, each on an instance where the extension was created at 0.1.0, given
# rows, and updated to the default version by the suite or spec named here
# first (in this pass only).  installcheck runs it before the fresh pass.
UPGRADE_REGRESS = upgrade_0_1_0 upgrade_catalog
UPGRADE_ISOLATION = upgrade_0_1_0
UPGRADE_REGRESS_OPTS = --temp-config=test/txoutbox.conf --temp-instance=tmp_check_regress_upgrade \
	--encoding=UTF8 --no-locale --outputdir=test/output_upgrade
UPGRADE_ISOLATION_OPTS = --temp-config=test/txoutbox.conf --temp-instance=tmp_check_iso_upgrade \
	--encoding=UTF8 --no-locale --inputdir=test --outputdir=test/output_iso_upgrade

EXTRA_CLEAN = tmp_check_regress tmp_check_iso test/output_iso results regression.diffs regression.out \
	tmp_check_regress_upgrade tmp_check_iso_upgrade test/output_upgrade test/output_iso_upgrade

# No LLVM bitcode: it needs clang, and the JIT gains nothing from this code.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)

# Stop at once, before compiling anything, on a release we do not support
# (src/pg_compat.h says the same to a compiler that gets there).
PG_MAJOR := $(shell $(PG_CONFIG) --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
ifneq ($(shell test "$(PG_MAJOR)" -ge 15 2>/dev/null && echo ok),ok)
$(error txoutbox supports PostgreSQL 15, 16, 17 and 18; $(PG_CONFIG) is PostgreSQL $(PG_MAJOR))
endif

include $(PGXS)

installcheck: installcheck-upgrade

.PHONY: installcheck-upgrade
installcheck-upgrade: submake $(REGRESS_PREP)
ifdef REGRESS
	@echo "+++ regress install-check, updated from 0.1.0 +++"
	$(pg_regress_installcheck) $(UPGRADE_REGRESS_OPTS) --dbname=$(CONTRIB_TESTDB) $(UPGRADE_REGRESS) $(REGRESS)
endif
ifdef ISOLATION
	@echo "+++ isolation install-check, updated from 0.1.0 +++"
	$(pg_isolation_regress_installcheck) $(UPGRADE_ISOLATION_OPTS) --dbname=$(ISOLATION_TESTDB) $(UPGRADE_ISOLATION) $(ISOLATION)
endif

# PGXS does not track headers: every object depends on ours
$(OBJS): $(wildcard src/*.h)
$(shlib): src/exports.map
