# Build and install ser the way SER's Makefile did:
#
#   make                      # cargo build --release (ser and sercmd)
#   make install              # as root: into /usr/local (PREFIX), or DESTDIR for packaging
#   make install PREFIX=/opt/ser DESTDIR=/tmp/stage
#   make install-initd        # the LSB init script and /etc/default/ser (non-systemd hosts)
#   make deb                  # Debian package with cargo-deb (cargo install cargo-deb)
#
# 'make install' does not build: run 'make' first (as your user), then
# 'make install' (as root). An existing ser.cfg is kept; the new one is
# installed next to it as ser.cfg.sample.

PREFIX      ?= /usr/local
DESTDIR     ?=
SBINDIR     ?= $(PREFIX)/sbin
CFGDIR      ?= $(PREFIX)/etc/ser
DEFAULTSDIR ?= $(PREFIX)/etc/default
MANDIR      ?= $(PREFIX)/share/man
DATADIR     ?= $(PREFIX)/share/ser
DOCDIR      ?= $(PREFIX)/share/doc/ser
SYSTEMDDIR  ?= $(PREFIX)/lib/systemd/system
INITDIR     ?= /etc/init.d
# where the SQLite database of the default config lives
DBFILE      ?= $(CFGDIR)/ser.db

CARGO       ?= cargo
TARGET_DIR  ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
PROFILE     ?= release
SER_BIN     ?= $(TARGET_DIR)/$(PROFILE)/ser
SERCMD_BIN  ?= $(TARGET_DIR)/$(PROFILE)/sercmd

INSTALL     ?= install

# The shipped files name default paths that installing rewrites: ser.cfg the
# /usr/local ones, the unit, init script and defaults file the Debian ones.
SUBST_CFG = sed -e 's|/usr/local/etc/ser/ser.db|$(DBFILE)|g' \
	-e 's|/usr/local/etc/ser|$(CFGDIR)|g' \
	-e 's|/usr/local/share/ser|$(DATADIR)|g'
SUBST_SYS = sed -e 's|/usr/sbin/ser|$(SBINDIR)/ser|g' \
	-e 's|/etc/ser/|$(CFGDIR)/|g' \
	-e 's|/etc/default/ser|$(DEFAULTSDIR)/ser|g'

.PHONY: all build install install-bin install-cfg install-man install-data \
	install-systemd install-initd uninstall deb-assets subst-cfg deb check-cfg

all: build

build:
	$(CARGO) build --release --bin ser --bin sercmd

$(SER_BIN) $(SERCMD_BIN):
	@echo "$@ is missing: run 'make' first (or pass SER_BIN=/path/to/ser SERCMD_BIN=...)" >&2
	@exit 1

install: install-bin install-cfg install-man install-data install-systemd

install-bin: $(SER_BIN) $(SERCMD_BIN)
	$(INSTALL) -d $(DESTDIR)$(SBINDIR)
	$(INSTALL) -m 0755 $(SER_BIN) $(DESTDIR)$(SBINDIR)/ser
	$(INSTALL) -m 0755 $(SERCMD_BIN) $(DESTDIR)$(SBINDIR)/sercmd

install-cfg:
	$(INSTALL) -d $(DESTDIR)$(CFGDIR) $(DESTDIR)$(DEFAULTSDIR)
	$(SUBST_CFG) etc/ser.cfg > $(DESTDIR)$(CFGDIR)/ser.cfg.sample
	@if [ -f $(DESTDIR)$(CFGDIR)/ser.cfg ]; then \
		echo "kept $(DESTDIR)$(CFGDIR)/ser.cfg; the new one is ser.cfg.sample"; \
	else \
		cp $(DESTDIR)$(CFGDIR)/ser.cfg.sample $(DESTDIR)$(CFGDIR)/ser.cfg; \
	fi
	@if [ ! -f $(DESTDIR)$(DEFAULTSDIR)/ser ]; then \
		$(SUBST_SYS) etc/default/ser > $(DESTDIR)$(DEFAULTSDIR)/ser; \
	fi

install-man:
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0644 man/ser.cfg.5 $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 man/ser.8 man/sercmd.8 $(DESTDIR)$(MANDIR)/man8/

install-data:
	$(INSTALL) -d $(DESTDIR)$(DATADIR)/db $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0644 etc/db/*.sql $(DESTDIR)$(DATADIR)/db/
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/

install-systemd:
	$(INSTALL) -d $(DESTDIR)$(SYSTEMDDIR)
	$(SUBST_SYS) etc/ser.service > $(DESTDIR)$(SYSTEMDDIR)/ser.service
	@echo "systemd: useradd --system ser; systemctl daemon-reload; systemctl enable --now ser"

install-initd:
	$(INSTALL) -d $(DESTDIR)$(INITDIR) $(DESTDIR)/etc/default
	$(SUBST_SYS) etc/init.d/ser > $(DESTDIR)$(INITDIR)/ser
	chmod 0755 $(DESTDIR)$(INITDIR)/ser
	@if [ ! -f $(DESTDIR)/etc/default/ser ]; then \
		$(SUBST_SYS) etc/default/ser > $(DESTDIR)/etc/default/ser; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/ser $(DESTDIR)$(SBINDIR)/sercmd
	rm -f $(DESTDIR)$(MANDIR)/man5/ser.cfg.5 $(DESTDIR)$(MANDIR)/man8/ser.8 \
		$(DESTDIR)$(MANDIR)/man8/sercmd.8
	rm -f $(DESTDIR)$(SYSTEMDDIR)/ser.service $(DESTDIR)$(CFGDIR)/ser.cfg.sample
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)
	@echo "kept $(DESTDIR)$(CFGDIR)/ser.cfg and $(DESTDIR)$(DEFAULTSDIR)/ser"

# ser.cfg with the Debian paths (/etc/ser, database in /var/lib/ser), for
# the [package.metadata.deb] assets of Cargo.toml.
DEB_ASSETS ?= target/deb
deb-assets:
	mkdir -p $(DEB_ASSETS)
	$(MAKE) --no-print-directory CFGDIR=/etc/ser DATADIR=/usr/share/ser \
		DBFILE=/var/lib/ser/ser.db SUBST_OUT=$(DEB_ASSETS)/ser.cfg subst-cfg

subst-cfg:
	$(SUBST_CFG) etc/ser.cfg > $(SUBST_OUT)

deb: build deb-assets
	$(CARGO) deb --no-build

# ser -c on the shipped config, with the built binary.
check-cfg: $(SER_BIN)
	$(SER_BIN) -c -f etc/ser.cfg
