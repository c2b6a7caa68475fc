# luabatch -- build, test and install.
#
# Every variable can be overridden (LuaRocks passes CFLAGS, LIBFLAG,
# LUA_INCDIR, LUA_LIBDIR, PREFIX, BINDIR, LIBDIR, LUADIR).
#
#   make                 build the luabatch executable and the luabatch.core module (Lua 5.4)
#   make LUA=luajit      build luabatch.core against LuaJIT 2.1 headers
#   make deps            install the Debian packages the build and tests need
#   make deps-run        install only what building and running need (make run does)
#   make run             run the main example (installs deps and builds first)
#   make check           fast unit tests (C core + busted unit specs, Lua 5.4)
#   make test            the whole suite, Lua 5.4 and LuaJIT, sanitizers, valgrind
#   make bench           benchmarks against the anchors
#   make fuzz            libFuzzer targets, FUZZ_S seconds each (default 60), ASan+UBSan
#   make test-fresh      make run + make test on a clean clone in a minimal Debian 12 container
#   make image           the task image (examples/container/Dockerfile) as IMAGE (luabatch:latest)
#   make install         install into PREFIX (default /usr/local): the executable,
#                        the modules, the man page and the bash completion
#   make rock            luabatch.core for LuaRocks (see "LuaRocks" below)

LUA        ?= lua5.4
ifeq ($(LUA),luajit)
LUA_INCDIR ?= /usr/include/luajit-2.1
LUA_IMPL    = luajit
LUA_VERSION ?= 5.1
else
LUA_INCDIR ?= /usr/include/lua5.4
LUA_IMPL    = lua5.4
LUA_VERSION ?= 5.4
endif
BUILD      ?= build/$(LUA_IMPL)
SAN        ?=
ifneq ($(SAN),)
BUILD      := build/san
endif

CC         ?= cc
OPT        ?= -O2 -g
WARN       ?= -Wall -Wextra -Wno-unused-parameter
CFLAGS     ?= $(OPT)
SANITIZERS  = -fsanitize=address -fsanitize=undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SANFLAGS    = $(if $(SAN),$(SANITIZERS))
ALL_CFLAGS  = -std=gnu11 $(WARN) $(CFLAGS) $(SANFLAGS) -fPIC -fvisibility=hidden -Isrc
LIBFLAG    ?= -shared
CURL_LIBS  ?= -lcurl
SSL_LIBS   ?= -lcrypto
YAML_LIBS  ?= -lyaml
EXPAT_LIBS ?= -lexpat
EDIT_LIBS  ?= -ledit
LUA_LIBS   ?= -llua5.4
CJSON_LIB  ?= /usr/lib/x86_64-linux-gnu/liblua5.4-cjson.a
# libcurl is not linked: the core loads it with dlopen on first HTTP use
# (src/lb_curl.h); CURL_LIBS links the C tests, which call curl_global_init.
CORE_LIBS   = $(SSL_LIBS) $(YAML_LIBS) $(EXPAT_LIBS) -lpthread -lm -ldl

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUADIR     ?= $(PREFIX)/share/lua/$(LUA_VERSION)
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions

CORE_SRC   := $(sort $(wildcard src/lb_*.c))
BIND_SRC   := $(sort $(wildcard src/bind_*.c))
LUA_SRC    := $(sort $(shell find lua -name '*.lua'))
CORE_OBJ   := $(CORE_SRC:src/%.c=$(BUILD)/obj/%.o)
BIND_OBJ   := $(BIND_SRC:src/%.c=$(BUILD)/obj/%.o)
CTEST_SRC  := $(sort $(wildcard tests/c/test_*.c))
CTEST_BIN  := $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)

MODULE      = $(BUILD)/luabatch/core.so
EXE         = $(BUILD)/bin/luabatch

ifeq ($(LUA_IMPL),luajit)
all: $(MODULE)
else
all: $(MODULE) $(EXE) luabatch
endif

.PHONY: all deps deps-run run demo check test bench lint install clean ctests rock install-rock FORCE \
        fuzz fuzz-build test-fresh
.DELETE_ON_ERROR:

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) $(BUILD)/flags | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -I$(LUA_INCDIR) -c -o $@ $<

# What the objects of $(BUILD) were compiled with; rewritten (and so the
# objects rebuilt) only when that changes: other headers, other CFLAGS.
COMPILE_LINE = $(CC) $(ALL_CFLAGS) -I$(LUA_INCDIR)
$(BUILD)/flags: FORCE | $(BUILD)/obj
	@echo '$(COMPILE_LINE)' | cmp -s - $@ || echo '$(COMPILE_LINE)' > $@
FORCE:

$(BUILD)/obj $(BUILD)/luabatch $(BUILD)/tests $(BUILD)/bin:
	mkdir -p $@

$(MODULE): $(CORE_OBJ) $(BIND_OBJ) | $(BUILD)/luabatch
	$(CC) $(LIBFLAG) $(SANFLAGS) -o $@ $^ $(CORE_LIBS)

# The executable embeds every module under lua/ (preloaded), lua-cjson and
# the core, so it runs from any directory with no LUA_PATH.
$(BUILD)/embed.c: $(LUA_SRC) tools/embed.lua | $(BUILD)/obj
	$(LUA) tools/embed.lua lua $(LUA_SRC) > $@

$(EXE): src/main.c $(BUILD)/embed.c $(CORE_OBJ) $(BIND_OBJ) | $(BUILD)/bin
	$(CC) $(ALL_CFLAGS) -fvisibility=default -I$(LUA_INCDIR) -o $@ src/main.c $(BUILD)/embed.c \
	    $(CORE_OBJ) $(BIND_OBJ) $(CJSON_LIB) $(LUA_LIBS) $(EDIT_LIBS) $(CORE_LIBS) -ldl

# ./luabatch at the top is the executable of the default build.
luabatch: $(EXE)
	ln -sf $(EXE) $@

# C unit tests link the core alone: it never needs Lua.
$(BUILD)/tests/%: tests/c/%.c tests/c/lb_test.h $(CORE_OBJ) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< $(CORE_OBJ) $(CORE_LIBS) $(CURL_LIBS)

ctests: $(CTEST_BIN)

deps:
	@tools/deps.sh test

# make run needs the build and run packages only (not the test stack)
deps-run:
	@tools/deps.sh run

run: deps-run
	@$(MAKE) --no-print-directory -s all
	./luabatch run examples/quickstart.yml

# The seed's aws-batch example end to end against local servers (Ceph RGW
# and the Batch emulator): no AWS account, no network.
demo: deps
	@$(MAKE) --no-print-directory -s all
	@examples/aws-batch/demo.sh

check: deps
	@$(MAKE) --no-print-directory -s all
	@tests/run --quick

test: deps
	@$(MAKE) --no-print-directory -s all
	@$(MAKE) --no-print-directory -s LUA=luajit all
	@tests/run

bench: deps
	@$(MAKE) --no-print-directory -s all
	@$(MAKE) --no-print-directory -s LUA=luajit all
	@tests/bench/run

# --- fuzzing (tests/fuzz/, README "Fuzzing") ------------------------------
# libFuzzer targets built with clang, ASan and UBSan into build/fuzz: the C
# parsers link the core's objects (built again, instrumented); the Lua
# targets embed lua/ and tests/fuzz/driver.lua in a Lua 5.4 state.
FUZZ_CC     ?= clang
FUZZ_BUILD   = build/fuzz
FUZZ_S      ?= 60
FUZZ_C       = yaml xml sigv4 s3part
FUZZ_LUA     = template expr json workflow
FUZZ_SAN     = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LUA_INC ?= /usr/include/lua5.4
FUZZ_CFLAGS  = -std=gnu11 $(WARN) $(FUZZ_SAN) -Isrc -I$(FUZZ_LUA_INC)
FUZZ_OBJ    := $(CORE_SRC:src/%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BIND   := $(BIND_SRC:src/%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_BINS    = $(FUZZ_C:%=$(FUZZ_BUILD)/fuzz_%) $(FUZZ_LUA:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/obj:
	mkdir -p $@

$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_C:%=$(FUZZ_BUILD)/fuzz_%): $(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(CORE_LIBS)

$(FUZZ_BUILD)/embed.c: $(LUA_SRC) tools/embed.lua | $(FUZZ_BUILD)/obj
	lua5.4 tools/embed.lua lua $(LUA_SRC) > $@

$(FUZZ_BUILD)/driver.c: tests/fuzz/driver.lua tests/fuzz/to_c.lua | $(FUZZ_BUILD)/obj
	lua5.4 tests/fuzz/to_c.lua fuzz_driver < $< > $@

$(FUZZ_LUA:%=$(FUZZ_BUILD)/fuzz_%): $(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_lua.c $(FUZZ_BUILD)/embed.c \
                                    $(FUZZ_BUILD)/driver.c $(FUZZ_OBJ) $(FUZZ_BIND)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_LUA_TARGET='"$*"' -o $@ $< $(FUZZ_BUILD)/embed.c \
	    $(FUZZ_BUILD)/driver.c $(FUZZ_BIND) $(FUZZ_OBJ) $(CJSON_LIB) -llua5.4 $(CORE_LIBS) -ldl

fuzz-build: $(FUZZ_BINS)

# Each target FUZZ_S seconds (default 60) from its corpus; a crash leaves
# its input in build/fuzz/artifacts/ (add it to tests/fuzz/corpus/<target>/).
fuzz: deps
	@$(MAKE) --no-print-directory -s fuzz-build
	@tests/fuzz/run $(FUZZ_S)

# The README's set-up on a clean clone of HEAD in a debootstrap-minbase
# Debian 12 container on a private Docker daemon (20-30 min).
test-fresh:
	@tools/test-fresh.sh

lint:
	@for f in $(LUA_SRC); do luajit -bl $$f >/dev/null || exit 1; done
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --suppress=missingIncludeSystem -Isrc src

# The image every Batch job (and the docker runner) runs, built from the
# Dockerfile as written; offline, its base comes from debootstrap (see
# tools/image.sh); a private dockerd under build/docker when DOCKER_HOST
# does not answer.
IMAGE      ?= luabatch:latest
.PHONY: image
image:
	@tools/deps.sh image
	@tools/image.sh $(IMAGE)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/luabatch $(DESTDIR)$(LUADIR)
	install -m 755 $(EXE) $(DESTDIR)$(BINDIR)/luabatch
	install -m 755 $(MODULE) $(DESTDIR)$(LIBDIR)/luabatch/core.so
	cd lua && find luabatch -name '*.lua' -exec install -D -m 644 {} $(DESTDIR)$(LUADIR)/{} \;
	install -D -m 644 man/luabatch.1 $(DESTDIR)$(MANDIR)/man1/luabatch.1
	install -D -m 644 completions/luabatch.bash $(DESTDIR)$(BASHCOMPDIR)/luabatch

# LuaRocks: `luarocks --lua-version 5.4 make` (Lua 5.4), or for LuaJIT and
# OpenResty `luarocks --lua-version 5.1 make LUA_INCDIR=/usr/include/luajit-2.1`.
# The module is built against the headers LuaRocks gives (LUA_INCDIR), in
# a build directory named by their LUA_VERSION_NUM and directory
# (build/rock-504-lua5.4, build/rock-501-luajit-2.1, ...) whose flags stamp
# rebuilds the objects if anything else changed: a build for one Lua is
# never reused for another.  The executable is `make`'s (Lua 5.4 embedded).
ROCK_LUA   = $(shell sed -n 's/^\#define LUA_VERSION_NUM[[:space:]]*\([0-9]*\).*/\1/p' $(LUA_INCDIR)/lua.h 2>/dev/null)
ROCK_BUILD = build/rock-$(ROCK_LUA)-$(notdir $(LUA_INCDIR))

rock:
	@case "$(ROCK_LUA)" in 501|504) ;; "") echo "no lua.h in LUA_INCDIR=$(LUA_INCDIR)" >&2; exit 1 ;; \
	  *) echo "luabatch builds for Lua 5.4, or 5.1 (LuaJIT 2.1); $(LUA_INCDIR)/lua.h is $(ROCK_LUA)" >&2; exit 1 ;; esac
	$(MAKE) BUILD=$(ROCK_BUILD) LUA_INCDIR=$(LUA_INCDIR) $(ROCK_BUILD)/luabatch/core.so

install-rock: rock
	install -d $(DESTDIR)$(LIBDIR)/luabatch $(DESTDIR)$(LUADIR)
	install -m 755 $(ROCK_BUILD)/luabatch/core.so $(DESTDIR)$(LIBDIR)/luabatch/core.so
	cd lua && find luabatch -name '*.lua' -exec install -D -m 644 {} $(DESTDIR)$(LUADIR)/{} \;

clean:
	rm -rf build luabatch
