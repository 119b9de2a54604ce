package sqlite

import (
	"context"
	"errors"
	"testing"

	"wren.im/wren/storage"
)

func TestPushRegistrations(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "bob")
	reg := func(service, node, res string) storage.PushRegistration {
		return storage.PushRegistration{Service: service, Node: node, Resource: res, Options: []byte("<x/>")}
	}
	if err := s.PutPushRegistration(ctx, "nobody", reg("p.example", "n1", "r"), 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("registration for a missing account: %v, want ErrNotFound", err)
	}
	if err := s.PutPushRegistration(ctx, "bob", reg("p.example", "n1", "phone"), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPushRegistration(ctx, "bob", reg("p.example", "n2", "tablet"), 2); err != nil {
		t.Fatal(err)
	}
	// The cap counts other registrations: replacing one is fine, a third is not.
	if err := s.PutPushRegistration(ctx, "bob", reg("p.example", "n3", "pc"), 2); !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Fatalf("third registration with max 2: %v, want ErrQuotaExceeded", err)
	}
	if err := s.SetPushErrors(ctx, "bob", "p.example", "n1", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPushRegistration(ctx, "bob", reg("p.example", "n1", "phone2"), 2); err != nil {
		t.Fatalf("replacing a registration at the cap: %v", err)
	}
	regs, err := s.PushRegistrations(ctx, "bob")
	if err != nil || len(regs) != 2 {
		t.Fatalf("PushRegistrations: %v %v", regs, err)
	}
	for _, r := range regs {
		if r.Node == "n1" && (r.Resource != "phone2" || r.Errors != 0 || string(r.Options) != "<x/>") {
			t.Fatalf("re-enabling must replace the resource and reset errors: %+v", r)
		}
	}
	if n, err := s.DeletePushRegistrations(ctx, "bob", "p.example", "n2"); err != nil || n != 1 {
		t.Fatalf("delete one node: %d %v", n, err)
	}
	if err := s.PutPushRegistration(ctx, "bob", reg("p.example", "n4", "x"), 0); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeletePushRegistrations(ctx, "bob", "p.example", ""); err != nil || n != 2 {
		t.Fatalf("delete every node of a service: %d %v", n, err)
	}
	// Registrations go with the account.
	if err := s.PutPushRegistration(ctx, "bob", reg("p.example", "n5", "x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if regs, _ := s.PushRegistrations(ctx, "bob"); len(regs) != 0 {
		t.Fatalf("registrations survived the account: %v", regs)
	}
}
