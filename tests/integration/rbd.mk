# test_rbd starts its own one-node Ceph cluster with this script (skipped without the packages).
$(BUILD)/obj/tests/integration/test_rbd.o: \
	CPPFLAGS += -DCEPH_CLUSTER_SH=\"$(abspath tests/lib/ceph-cluster.sh)\"
