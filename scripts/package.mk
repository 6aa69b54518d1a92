# The Debian package (debian/, scripts/build-deb.sh): built in a copy of the tree under
# build/deb/<arch>/. package-check is what CI runs: build, lintian, install, check, purge.
.PHONY: deb package-check
deb:
	@sh scripts/build-deb.sh
package-check:
	@sh scripts/package-check.sh
